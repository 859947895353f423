"""Why a global direction shared by clusters is hard for one network: exponents through the mixture.

Derived in the ``kawata2025`` chapter (section "Why the whole task is harder"). A neuron ``sigma(<u, x>)`` sees,
in cluster ``c``, its pre-activation shifted by ``mu_c = rho <u, v_c>``; by the shift identity the ``k``-th Hermite
coefficient of ``sigma(. + mu)`` is a polynomial ``sigma_hat_k(mu)`` (:func:`moetheory.hermite.shifted_coefficients`).
Summed over clusters with weights ``s_c`` (``sum_c s_c = 0``), the ``mu``-free part cancels and the lowest total degree
in the overlaps, the *effective exponent* of the global direction, rises above ``k*``.
"""

from __future__ import annotations

import sympy as sp

from moetheory import hermite
from moetheory.activations import HERMITE_ACTIVATIONS
from moetheory.checks import check_choice
from moetheory.papers.kawata2025.data import make_cluster_problem

__all__ = ["global_correlation", "effective_exponent", "mixture_exponent", "setting_exponent"]


def global_correlation(sigma, z, global_coeffs, s, overlaps, rho, m):
    """E over the mixture of s_c g*(<w_g, x>) sigma(<u, x>), up to the factor 1/C, as a SymPy polynomial.

    ``overlaps[c]`` is ``<u, v_c>`` (a SymPy expression), ``m = <u, w_g>``. By the shift identity each cluster
    contributes ``s_c sum_k gamma_k sigma_hat_k(rho <u, v_c>) m^k`` with
    ``sigma_hat_k(mu) = E[sigma(Z + mu) h_k(Z)]``.
    """
    mu = sp.Symbol("mu")
    shifted = hermite.shifted_coefficients(sigma, z, mu, len(global_coeffs) - 1)
    total = sum(
        sp.nsimplify(s_c) * sp.nsimplify(g) * shifted[k].subs(mu, rho * a) * m**k
        for s_c, a in zip(s, overlaps, strict=True)
        for k, g in enumerate(global_coeffs)
        if g
    )
    return sp.expand(total)


def effective_exponent(poly, symbols):
    """Lowest total degree in ``symbols`` (each of order d^(-1/2) at a random start); ``sp.oo`` if zero."""
    poly = sp.expand(poly)
    if poly == 0:
        return sp.oo
    return min(sum(mon) for mon in sp.Poly(poly, *symbols).monoms())


def mixture_exponent(activation: str, n_clusters: int, layout: str, rho: float, d: int) -> tuple:
    """(effective exponent of w_g for a vanilla neuron, per-cluster k*) for the student ``activation`` (a name in
    :data:`~moetheory.activations.HERMITE_ACTIVATIONS`, polynomial) on
    :func:`~moetheory.data.make_cluster_problem`'s default links and signs."""
    coeffs = HERMITE_ACTIVATIONS[check_choice("activation", activation, HERMITE_ACTIVATIONS)]
    if coeffs is None:
        polynomial = ", ".join(k for k, c in HERMITE_ACTIVATIONS.items() if c)
        raise ValueError(f"activation must be a polynomial one ({polynomial}) to compute an exponent; "
                         f"got {activation!r}")
    z, m = sp.symbols("z m", real=True)
    sigma = sum(sp.nsimplify(c) * hermite.h(k, z) for k, c in enumerate(coeffs))
    problem = make_cluster_problem(d, n_clusters, rho=rho, layout=layout)
    a = sp.symbols(f"a1:{n_clusters + 1}", real=True)
    overlaps = (a[0], -a[0]) if layout == "antipodal" else a  # <u, v_c>; antipodal: v_2 = -v_1
    poly = global_correlation(sigma, z, problem.global_coeffs, problem.s, overlaps, sp.nsimplify(rho), m)
    return effective_exponent(poly, (m, *a)), problem.k_star


def setting_exponent(cfg) -> tuple:
    """:func:`mixture_exponent` in the setting of a ``kawata2025`` config (``activation``, ``n_clusters``,
    ``layout``, ``rho``, ``d``)."""
    return mixture_exponent(cfg.activation, cfg.n_clusters, cfg.layout, cfg.rho, cfg.d)
