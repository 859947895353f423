"""Why a global direction shared by clusters is hard for one network: exponents through the mixture.

Derived in the ``kawata2025`` chapter (section "Why the whole task is harder"). A neuron ``sigma(<u, x>)`` sees,
in cluster ``c``, its pre-activation shifted by ``mu_c = rho <u, v_c>``; by the shift identity the ``k``-th Hermite
coefficient of ``sigma(. + mu)`` is a polynomial ``sigma_hat_k(mu)`` (:func:`moetheory.hermite.shifted_coefficients`).
Summed over clusters with weights ``s_c`` (``sum_c s_c = 0``), the ``mu``-free part cancels and the lowest total degree
in the overlaps, the *effective exponent* of the global direction, rises above ``k*``.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from moetheory import hermite
from moetheory.activations import HERMITE_ACTIVATIONS
from moetheory.checks import check_choice
from moetheory.papers.kawata2025.data import make_cluster_problem

__all__ = ["global_correlation", "effective_exponent", "mixture_exponent", "setting_exponent", "mean_basis",
           "task_correlations", "task_exponent"]


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


def mean_basis(problem) -> np.ndarray:
    """An orthonormal basis ``(r, d)`` of the span of the cluster means (``v_1`` alone for antipodal means)."""
    q, r = np.linalg.qr(problem.means.T)
    keep = np.abs(np.diag(r)) > 1e-9
    return (q[:, keep] * np.sign(np.diag(r)[keep])).T


def task_correlations(problem, max_degree: int) -> dict:
    """``{(a_1, ..., a_r, b): E[y prod_j <e_j, x>^(a_j) <w_g, x>^b]}``, exact (SymPy), for every monomial of total
    degree ``<= max_degree`` in the coordinates along an orthonormal basis ``e_j`` of the means' span
    (:func:`mean_basis`) and along ``w_g``.

    In cluster ``c`` the coordinates are independent: ``<e_j, x> = rho <e_j, v_c> + Z_j``, ``<w_g, x> = G``, and
    ``<w_c, x>`` (orthogonal to all of them) enters only through ``E f*_c = `` its ``h_0`` coefficient; so
    ``E[y m | c] = E[f*_c] E[m | c] + s_c E[g*(G) G^b] prod_j E[(mu_cj + Z)^(a_j)]``, averaged over the clusters.
    """
    z = sp.Symbol("z", real=True)
    basis = mean_basis(problem)
    mu = [[sp.nsimplify(round(problem.rho * float(v), 12)) for v in row] for row in problem.means @ basis.T]
    shifted = functools.cache(lambda m, a: hermite.gaussian_expectation(sp.expand((m + z) ** a), z))
    g_star = sum(sp.nsimplify(c) * hermite.h(k, z) for k, c in enumerate(problem.global_coeffs))
    g_moment = functools.cache(lambda b: hermite.gaussian_expectation(sp.expand(g_star * z**b), z))
    local_means = [sp.nsimplify(f[0] if f else 0) for f in problem.local_coeffs]  # E f*_c(Z): its h_0 coefficient
    signs = [sp.nsimplify(s_c) for s_c in problem.s]
    out = {}
    for degree in range(max_degree + 1):
        for powers in _compositions(degree, basis.shape[0] + 1):
            *a, b = powers
            total = sum(
                sp.prod([shifted(m, k) for m, k in zip(mu_c, a, strict=True)])
                * (f0 * shifted(0, b) + s_c * g_moment(b))
                for mu_c, f0, s_c in zip(mu, local_means, signs, strict=True)
            )
            out[tuple(powers)] = sp.expand(total / len(mu))
    return out


def task_exponent(problem, max_degree: int = 8):
    """The information exponent of the whole task along ``w_g``: the lowest total degree of a monomial in
    (``<e_j, x>``, ``<w_g, x>``) with a non-zero correlation with ``y`` (:func:`task_correlations`) among those
    of non-zero degree in ``<w_g, x>``; ``sp.oo`` if none up to ``max_degree``. ``k* + 1`` for the default links:
    ``g*`` needs ``<w_g, x>^(k*)``, and the signs ``s_c`` (summing to zero) cancel the rest unless one factor
    ``<v, x>`` tells the clusters apart."""
    found = [sum(p) for p, v in task_correlations(problem, max_degree).items() if v != 0 and p[-1] > 0]
    return min(found) if found else sp.oo


def _compositions(total: int, parts: int):
    """Every tuple of ``parts`` non-negative integers summing to ``total``."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)
