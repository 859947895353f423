"""The one registry of activations and links, and the torch Hermite evaluators, against independent routes."""

import numpy as np
import pytest
import sympy as sp
import torch

from moetheory import activations, hermite
from moetheory.papers.chen2022 import patch_cnn

Z = torch.linspace(-3, 3, 61, dtype=torch.float64)


def test_every_nonlinear_activation_has_a_patch_kernel_that_agrees_with_it():
    assert set(patch_cnn.ACTIVATE) == set(activations.ACTIVATIONS) - {"linear"}
    for name, kernel in patch_cnn.ACTIVATE.items():
        z = Z.clone().requires_grad_()
        expected = activations.get_activation(name)(z)
        (grad,) = torch.autograd.grad(expected.sum(), z)
        slope = torch.empty_like(Z)
        value = kernel(Z.clone(), slope)
        torch.testing.assert_close(value, expected.detach())
        torch.testing.assert_close(slope * patch_cnn.SLOPE_SCALE.get(name, 1.0), grad)


@pytest.mark.parametrize("name", activations.LINKS)
def test_links_are_activations_with_derivatives_and_numpy_twins(name):
    g = activations.link(name)
    assert g is activations.ACTIVATIONS[name]
    z = Z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(g(z).sum(), z)
    torch.testing.assert_close(activations.link_derivative(name)(Z), grad)
    np.testing.assert_allclose(activations.numpy_link(name)(Z.numpy()), g(Z).numpy(), rtol=1e-12, atol=1e-15)


def test_unknown_names_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match="nonlinearity must be one of 'linear', 'sigmoid', 'relu'"):
        activations.link("tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        activations.get_activation("swish")
    with pytest.raises(ValueError, match="activation must be one of 'h3'"):
        activations.hermite_activation("cubic")


@pytest.mark.parametrize("name", sorted(activations.HERMITE_ACTIVATIONS))
def test_hermite_students_give_their_value_and_derivative(name):
    coeffs = activations.HERMITE_ACTIVATIONS[name]
    z = Z.clone().requires_grad_()
    value, deriv = activations.hermite_activation(name)(z)
    (grad,) = torch.autograd.grad(value.sum(), z)
    torch.testing.assert_close(deriv.detach(), grad)
    if coeffs is not None:
        t = sp.Symbol("t")
        sigma = sp.lambdify(t, sum(sp.nsimplify(c) * hermite.h(k, t) for k, c in enumerate(coeffs)))
        np.testing.assert_allclose(value.detach().numpy(), sigma(Z.numpy()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", range(7))
def test_torch_hermite_polynomials_match_sympy(k):
    t = sp.Symbol("t")
    exact = sp.lambdify(t, hermite.h(k, t))(Z.numpy()) * np.ones(len(Z))
    np.testing.assert_allclose(hermite.hermite_torch(k, Z).numpy(), exact, rtol=1e-12, atol=1e-12)
    coeffs = [0] * k + [1]
    np.testing.assert_allclose(hermite.hermite_series(Z, coeffs).numpy(), exact, rtol=1e-12, atol=1e-12)
