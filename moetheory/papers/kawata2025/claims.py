"""The kawata2025 claims: what the abstract states, tested on a run of the experiment (:func:`claims`), and where
each statement comes from (:data:`PROVENANCE`). No paper numbers: the paper's text could not be read."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from moetheory import ledger
from moetheory.ledger import NOT_REPORTED, NOT_RUN, Claim

if TYPE_CHECKING:
    from moetheory.papers.kawata2025 import Result

STRONG = 0.8  # "weak-to-strong recovery": best |<u, w_g>| at least this on every seed
CHANCE_FACTOR = 1.25  # vanilla "near chance": best |<u, w_g>| at most this times the chance level
ROUTER_MIN = 0.8  # router rows within this cosine of the cluster means
_ABSTRACT = "abstract (arXiv 2506.01656; paper text not read): "
PROVENANCE = {  # claim id (main setting; the -c<C> variants share it) -> (provenance, source); no paper numbers
    "kawata2025/global-exponent-rises": (
        "abstract", _ABSTRACT + "the information exponent 'is low for each cluster, but increases when we consider "
        "the entire task'; the exponent itself is derived here"),
    "kawata2025/moe-global-overlap": (
        "abstract", _ABSTRACT + "the MoE 'succeeds in dividing the problem into easier subproblems'; that the "
        "global task is learned last is from third-party summaries; the overlap test is ours"),
    "kawata2025/vanilla-global-overlap": (
        "abstract", _ABSTRACT + "'a vanilla neural network fails in detecting such a latent organization'; the "
        "chance-level test is ours"),
    "kawata2025/router-alignment": (
        "third party", "a third-party review's account of the stagewise algorithm (paper text not read): after the "
        "experts specialise, the routing weights learn to point towards the relevant experts; alignment with the "
        "cluster means is our reading"),
    "kawata2025/moe-beats-vanilla": (
        "abstract", _ABSTRACT + "the vanilla network fails where the MoE succeeds; the test-MSE comparison is ours"),
}


def provenance_of(claim_id: str, config: dict | None = None) -> dict:
    """``provenance`` and ``source`` of a kawata2025 claim; ``<id>-c<C>`` (more clusters) shares ``<id>``'s."""
    return ledger.provenance_entry(PROVENANCE, re.sub(r"-c\d+$", "", claim_id))


def claims(result: Result) -> list[Claim]:
    """The five claims in the main setting, then the same five with ids ``<id>-c<C>`` for each ``more_clusters``."""
    out = _setting_claims(result, "", "")
    for c, extra in result.extra.items():
        out += _setting_claims(extra, f"-c{c}", f"C = {c} clusters, orthogonal means: ")
    return out


def _setting_claims(result: Result, suffix: str, prefix: str) -> list[Claim]:
    cfg = result.config
    van_g = result.vanilla_overlap[:, -1, :, -1].max(-1).astype(float)  # (S,)
    moe_g = np.nanmax(result.moe_overlap[:, -1, :, -1], -1).astype(float)
    van_mse, moe_mse = result.vanilla_mse[:, -1].astype(float), result.moe_mse[:, -1].astype(float)
    exponent, k_star = result.global_exponent, result.k_star
    exp_text = (
        "inf (exact cancellation)" if exponent == sp.oo else (NOT_RUN if exponent is None else int(exponent))
    )
    return [
        Claim(
            f"kawata2025/global-exponent-rises{suffix}",
            prefix + "Seen through the whole mixture, the global direction has a higher information exponent than k*",
            NOT_REPORTED,
            exp_text,
            None if exponent is None else bool(exponent >= k_star + 1),  # not derived for a non-polynomial one
            criterion="SymPy (shift identity): lowest total degree in (<u,w_g>, <u,v_c>) of the "
            f"cluster-summed correlation >= k*+1 = {k_star + 1} ({cfg.activation}, {cfg.layout} means)",
            **provenance_of(f"kawata2025/global-exponent-rises{suffix}"),
        ),
        Claim(
            f"kawata2025/moe-global-overlap{suffix}",
            prefix + "The stagewise MoE recovers the global direction w_g",
            NOT_REPORTED,
            float(moe_g.min()),
            bool(moe_g.min() >= STRONG),
            criterion=f"min over {cfg.n_seeds} seeds of max over expert neurons |<u,w_g>| >= {STRONG} "
            f"(d = {cfg.d}, {int(result.samples[-1])} samples)",
            **provenance_of(f"kawata2025/moe-global-overlap{suffix}"),
        ),
        Claim(
            f"kawata2025/vanilla-global-overlap{suffix}",
            prefix + "A vanilla two-layer network does not find w_g at the same sample budget",
            NOT_REPORTED,
            float(van_g.max()),
            bool(van_g.max() <= CHANCE_FACTOR * result.chance_level),
            criterion=f"max over seeds of max over {cfg.vanilla_width} neurons |<u,w_g>| <= "
            f"{CHANCE_FACTOR} x chance level {result.chance_level:.3f} (E max of |N(0,1/d)| over the width)",
            **provenance_of(f"kawata2025/vanilla-global-overlap{suffix}"),
        ),
        Claim(
            f"kawata2025/router-alignment{suffix}",
            prefix + "The router's directions align with the cluster means",
            NOT_REPORTED,
            float(result.router_alignment_final.min()),
            bool(result.router_alignment_final.min() >= ROUTER_MIN),
            criterion=f"min over seeds and clusters of max over kept experts cos(W_m, v_c) >= {ROUTER_MIN}",
            **provenance_of(f"kawata2025/router-alignment{suffix}"),
        ),
        Claim(
            f"kawata2025/moe-beats-vanilla{suffix}",
            prefix + "The MoE's test MSE is below the vanilla network's at the same number of samples",
            NOT_REPORTED,
            f"{moe_mse.mean():.3g} vs {van_mse.mean():.3g}",
            bool((moe_mse < van_mse).all()),
            criterion="test MSE (mean over seeds shown) of the MoE < vanilla's on every seed",
            **provenance_of(f"kawata2025/moe-beats-vanilla{suffix}"),
        ),
    ]
