"""Activations and expert links by name: one registry for every chapter.

- :data:`ACTIVATIONS`: the elementwise torch nonlinearities of experts (the primer's MLP experts, Wang & E's nets,
  Chen et al.'s patch CNNs, whose fused in-place kernels :data:`moetheory.papers.chen2022.patch_cnn.ACTIVATE` cover
  the same names);
- :data:`LINKS`: the expert links ``g`` of Makkuva et al.'s gated MoE, a subset of :data:`ACTIVATIONS`, with their
  derivatives (:func:`link_derivative`) and NumPy twins (:func:`numpy_link`);
- :data:`HERMITE_ACTIVATIONS`: students given by their Hermite coefficients (Kawata et al.), evaluated with their
  derivative by :func:`hermite_activation`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from moetheory.checks import check_choice

ACTIVATIONS = {
    "linear": lambda t: t,
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "celu": nn.functional.celu,  # alpha = 1: among the official Theorem 4.1 checks of Chen et al.
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "cubic": lambda t: t**3,
}
"""Elementwise torch activations of experts, by name."""

LINKS = ("linear", "sigmoid", "relu")
"""The expert links g of the gated MoE (Makkuva et al.): names in :data:`ACTIVATIONS`."""

_LINK_DERIVATIVES = {
    "linear": torch.ones_like,
    "sigmoid": lambda t: torch.sigmoid(t) * (1 - torch.sigmoid(t)),
    "relu": lambda t: (t > 0).to(t.dtype),
}
_NUMPY_LINKS = {
    "linear": lambda t: t,
    "sigmoid": lambda t: 0.5 * (1 + np.tanh(t / 2)),  # no overflow for large |t|
    "relu": lambda t: np.maximum(t, 0.0),
}

HERMITE_ACTIVATIONS = {"h3": (0, 0, 0, 1), "h3+h4": (0, 0, 0, 2**-0.5, 2**-0.5), "relu": None}
"""Students by name: Hermite coefficients in ``h_k = He_k / sqrt(k!)`` (``None``: not a polynomial, evaluated
directly)."""


def get_activation(name: str):
    """The elementwise activation called ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]


def link(name: str):
    """The expert link ``g`` called ``name`` (one of :data:`LINKS`) as a torch function."""
    return ACTIVATIONS[check_choice("nonlinearity", name, LINKS)]


def link_derivative(name: str):
    """``g'`` of :func:`link` ``name`` as a torch function."""
    return _LINK_DERIVATIVES[check_choice("nonlinearity", name, LINKS)]


def numpy_link(name: str):
    """:func:`link` ``name`` on NumPy arrays."""
    return _NUMPY_LINKS[check_choice("nonlinearity", name, LINKS)]


def hermite_activation(name: str):
    """``z -> (sigma(z), sigma'(z))`` for a student in :data:`HERMITE_ACTIVATIONS` (torch)."""
    from moetheory.hermite import hermite_series  # SymPy loads only where a Hermite student is used

    coeffs = HERMITE_ACTIVATIONS[check_choice("activation", name, HERMITE_ACTIVATIONS)]
    if coeffs is None:
        return lambda z: (torch.relu(z), (z > 0).to(z.dtype))
    return lambda z: hermite_series(z, coeffs, derivative=True)


def hermite_value(name: str):
    """``z -> sigma(z)`` of :func:`hermite_activation` ``name`` without the derivative (half the work on the
    large feature tensors of the output-layer fits)."""
    from moetheory.hermite import hermite_series

    coeffs = HERMITE_ACTIVATIONS[check_choice("activation", name, HERMITE_ACTIVATIONS)]
    if coeffs is None:
        return torch.relu
    return lambda z: hermite_series(z, coeffs)
