"""The kawata2025 claims: what the abstract states, tested on a run of the experiment (:func:`claims`), and where
each statement comes from (:data:`PROVENANCE`). No paper numbers: the paper's text could not be read."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import sympy as sp

from moetheory import ledger
from moetheory.ledger import NOT_REPORTED, Claim
from moetheory.metrics import slope_band
from moetheory.papers.kawata2025.model import chance_level
from moetheory.papers.kawata2025.separation import (
    SLOPE_GAP_MIN,
    moe_samples,
    sample_counts,
    separation_verdict,
)

if TYPE_CHECKING:
    from moetheory.papers.kawata2025 import Result

STRONG = 0.8  # "weak-to-strong recovery": best |<u, w_g>| at least this on every seed
WEAK = 0.5  # stage 1 "recovers" w_c: some stage-1 neuron with |<u, w_c>| at least this (fixed before measuring)
CHANCE_FACTOR = 1.25  # vanilla "near chance": best |<u, w_g>| at most this times the chance level
ROUTER_MIN = 0.8  # router rows within this cosine of the cluster means
# expert specialisation (fixed before measuring): an expert "holds w_c" when one of its neurons has |<u, w_c>| >=
# STRONG (more than twice the chance level of its 16 neurons at d = 32, 0.36); the claim holds when at least this
# fraction of (seed, cluster) pairs has such an expert that also receives a majority of its data from cluster c
SPECIALISED_MIN = 0.9
_ABSTRACT = "abstract (arXiv 2506.01656; paper text not read): "
PROVENANCE = {  # claim id (main setting; the -c<C> variants share it) -> (provenance, source); no paper numbers
    "kawata2025/global-exponent-rises": (
        "abstract", _ABSTRACT + "the information exponent 'is low for each cluster, but increases when we consider "
        "the entire task'; the task's exponent along w_g (k*+1 for these links, SymPy, checked by Monte Carlo) is "
        "derived here, and reading 'increases' as that exponent is ours"),
    "kawata2025/moe-global-overlap": (
        "abstract", _ABSTRACT + "the MoE 'succeeds in dividing the problem into easier subproblems'; that the "
        "global task is learned last is from third-party summaries; the overlap test is ours (read it with the "
        "routing purity of the metrics: an unbalanced split alone breaks the cancellation)"),
    "kawata2025/vanilla-global-overlap": (
        "abstract", _ABSTRACT + "'a vanilla neural network fails in detecting such a latent organization'; the "
        "chance-level test is ours"),
    "kawata2025/router-alignment": (
        "third party", "a third-party review's account of the stagewise algorithm (paper text not read): after the "
        "experts specialise, the routing weights learn to point towards the relevant experts; alignment with the "
        "cluster means is our reading"),
    "kawata2025/expert-specialisation": (
        "abstract", _ABSTRACT + "the MoE 'succeeds in dividing the problem into easier subproblems'; the OpenReview "
        "lay summary: MoE models 'leverage the specialization of experts'; that the experts' own neurons specialise "
        "to the clusters is from a third-party review; the test (routing majority and a neuron aligned with w_c "
        "in the same expert) is ours"),
    "kawata2025/separation-slope": (
        "derived", _ABSTRACT + "a vanilla network fails where the MoE succeeds, and the information exponent 'is "
        "low for each cluster, but increases when we consider the entire task'; the predicted slopes are derived "
        "here: online SGD needs about d^(k-1) samples for an exponent k >= 3 (Ben Arous et al. 2021), k = k*+1 for "
        "the whole task (the vanilla network), k = k* per cluster (the MoE); the measurement and its criterion are "
        "ours"),
    "kawata2025/moe-beats-vanilla": (
        "abstract", _ABSTRACT + "the vanilla network fails where the MoE succeeds; the test-MSE comparison is ours"),
}


def provenance_of(claim_id: str, config: dict | None = None) -> dict:
    """``provenance`` and ``source`` of a kawata2025 claim; ``<id>-c<C>`` (more clusters) shares ``<id>``'s."""
    return ledger.provenance_entry(PROVENANCE, re.sub(r"-c\d+$", "", claim_id))


def expert_overlap(result: Result) -> np.ndarray:
    """``(S, M, C + 1)``: best ``|<u, w>|`` over each expert's neurons at the end of the run (0 for a pruned
    expert, whose neurons are NaN-padded)."""
    final = np.nan_to_num(np.asarray(result.moe_overlap[:, -1], dtype=float))  # (S, M * K, C + 1)
    s, n, c1 = final.shape
    m = np.shape(result.routing_counts)[-1]
    return final.reshape(s, m, n // m, c1).max(2)


def expert_specialisation(result: Result, threshold: float = STRONG) -> np.ndarray:
    """``(S, C)`` booleans: some expert receives a strict majority of its routed test points from cluster c AND
    holds a neuron with ``|<u, w_c>| >= threshold`` (``Result.routing_counts (S, C, M)``, :func:`expert_overlap`)."""
    counts = np.asarray(result.routing_counts, dtype=float)  # (S, C, M)
    majority = 2 * counts > counts.sum(1, keepdims=True)  # an expert with no data is nobody's
    aligned = expert_overlap(result)[..., :-1].transpose(0, 2, 1) >= threshold  # (S, C, M)
    return (majority & aligned).any(-1)


def purity_chance(routing_counts) -> np.ndarray:
    """``(S,)`` chance level of the routing purity: a routing blind to the cluster with the same expert loads sends
    each cluster's points to the experts in proportion to their loads, so its purity is the largest load share."""
    counts = np.asarray(routing_counts, dtype=float)  # (S, C, M)
    return counts.sum(1).max(-1) / counts.sum((1, 2))


def claims(result: Result) -> list[Claim]:
    """The six claims in the main setting, then the same six with ids ``<id>-c<C>`` for each ``more_clusters``, then
    ``separation-slope`` when the run measured the separation (``separation_dims``)."""
    out = _setting_claims(result, "", "")
    for c, extra in result.extra.items():
        out += _setting_claims(extra, f"-c{c}", f"C = {c} clusters, orthogonal means: ")
    if result.separation is not None:
        out.append(separation_claim(result))
    return out


def separation_slopes(separation: dict) -> dict:
    """Vanilla and MoE log-log slopes ``(slope, low, high)`` of samples to recover w_g against d, and
    :func:`~.separation.separation_verdict` of their gap."""
    dims, van, moe = separation["dims"], sample_counts(separation["vanilla"]), moe_samples(separation)
    return {"vanilla": slope_band(dims, van), "moe": slope_band(dims, moe),
            **separation_verdict(dims, van, moe)}


def separation_claim(result: Result) -> Claim:
    cfg, k_star = result.config, result.k_star
    fit = separation_slopes(result.separation)
    band = lambda v: f"{v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}]"  # noqa: E731 (a band of +-0.3 or more: one decimal)
    return Claim(
        "kawata2025/separation-slope",
        "Samples to recover w_g grow with d faster for a vanilla network than for the MoE, by about one power of d",
        NOT_REPORTED,
        f"gap {fit['gap']:.1f} [{fit['gap_low']:.1f}, {fit['gap_high']:.1f}] (vanilla {band(fit['vanilla'])}, "
        f"MoE {band(fit['moe'])}; predicted {k_star} and {k_star - 1})",
        fit["holds"],
        criterion=f"log-log slope of the median over {cfg.separation_seeds} seeds of the samples until the best "
        f"|<u,w_g>| >= {STRONG} (MoE: stage 1 until every w_c has |<u,w_c>| >= {WEAK}, plus stage 3, each counted "
        f"from its stage's start; the router's fixed budget not counted), student {cfg.separation_activation}, d in "
        f"{list(result.separation['dims'])}, geometric checks (2^(1/8) apart); vanilla slope minus MoE slope: the 5th "
        f"percentile of its bootstrap over seeds > {SLOPE_GAP_MIN} (half the predicted gap (k*+1) - k* = 1)",
        **provenance_of("kawata2025/separation-slope"),
    )


def _setting_claims(result: Result, suffix: str, prefix: str) -> list[Claim]:
    cfg = result.config
    van_g = result.vanilla_overlap[:, -1, :, -1].max(-1).astype(float)  # (S,)
    moe_g = np.nanmax(result.moe_overlap[:, -1, :, -1], -1).astype(float)
    van_mse, moe_mse = result.vanilla_mse[:, -1].astype(float), result.moe_mse[:, -1].astype(float)
    exponent, k_star, task = result.global_exponent, result.k_star, result.task_exponent
    if exponent == sp.oo:  # sigma = h3 (or He3 + He5 with antipodal means): the student, not the task
        neuron = "inf, the special instance where its gradient towards w_g vanishes at every order"
    else:
        neuron = "not derived" if exponent is None else int(exponent)
    exp_text = (f"task exponent {task} along w_g (per-cluster k* = {k_star}); a vanilla {cfg.activation} neuron: "
                f"{neuron}")
    purity, chance = np.median(result.routing_purity), np.median(purity_chance(result.routing_counts))
    specialised = expert_specialisation(result)
    boundary = float(np.nanmin(result.router_boundary))
    return [
        Claim(
            f"kawata2025/global-exponent-rises{suffix}",
            prefix + "Seen through the whole mixture, the global direction has a higher information exponent than k*",
            NOT_REPORTED,
            exp_text,
            bool(task != sp.oo and k_star + 1 <= task),
            criterion="SymPy: the task's exponent along w_g (lowest degree of a polynomial in (<v,x>, <w_g,x>) "
            f"correlated with y) is finite and >= k*+1 = {k_star + 1} ({cfg.layout} means); the student "
            f"neuron's exponent (shift identity) beside it",
            **provenance_of(f"kawata2025/global-exponent-rises{suffix}"),
        ),
        Claim(
            f"kawata2025/moe-global-overlap{suffix}",
            prefix + "The stagewise MoE recovers the global direction w_g",
            NOT_REPORTED,
            f"{moe_g.min():.3f} (routing purity {purity:.2f}, chance {chance:.2f})",
            bool(moe_g.min() >= STRONG),
            criterion=f"min over {cfg.n_seeds} seeds of max over expert neurons |<u,w_g>| >= {STRONG} "
            f"(d = {cfg.d}, {int(result.samples[-1])} samples); shown beside it, not tested: the routing purity "
            "(share of test points routed to their cluster's majority expert, median over seeds) and its chance "
            "level (the same routing loads blind to the cluster: the largest load share, median)",
            **provenance_of(f"kawata2025/moe-global-overlap{suffix}"),
        ),
        Claim(
            f"kawata2025/vanilla-global-overlap{suffix}",
            prefix + "A vanilla two-layer network does not find w_g at the same sample budget",
            NOT_REPORTED,
            float(van_g.max()),
            bool(van_g.max() <= CHANCE_FACTOR * result.chance_level),
            criterion=f"max over seeds of max over {cfg.vanilla_width} neurons |<u,w_g>| <= "
            f"{CHANCE_FACTOR} x chance level {result.chance_level:.3f} (the exact E max over the width of "
            "|<u,w_g>|, u uniform)",
            **provenance_of(f"kawata2025/vanilla-global-overlap{suffix}"),
        ),
        Claim(
            f"kawata2025/router-alignment{suffix}",
            prefix + "The router's directions align with the cluster means (compared as routing uses them: "
            "differences of router rows against differences of means)",
            NOT_REPORTED,
            f"{boundary:.3f} (cos(W_m, v_c): {float(result.router_alignment_final.min()):.3f}, the ideal "
            f"router's {result.router_ceiling:.3f})",
            bool(boundary >= ROUTER_MIN),
            criterion=f"min over seeds and pairs of clusters c, c' of cos(W_m_c - W_m_c', v_c - v_c') >= "
            f"{ROUTER_MIN}, m_c the kept expert that receives most of cluster c (0 when c and c' share it): the "
            "router's boundary between two clusters against the Bayes one. Shown beside it, not tested: min over "
            "seeds and clusters of max over kept experts cos(W_m, v_c) (the test of records before 2026-12-02), "
            "which a common vector added to every row changes without changing any routing, and the value of "
            "that measure for the ideal router (rows rho v_c) written with rows summing to zero, as a softmax "
            "router trained from zero keeps them",
            **provenance_of(f"kawata2025/router-alignment{suffix}"),
        ),
        Claim(
            f"kawata2025/expert-specialisation{suffix}",
            prefix + "Each cluster gets an expert that receives mostly its data and whose neurons learn its w_c",
            "'succeeds in dividing the problem into easier subproblems'",
            float(specialised.mean()),
            bool(specialised.mean() >= SPECIALISED_MIN),
            criterion=f"fraction of the {specialised.size} (seed, cluster) pairs with an expert that receives a "
            f"majority of its routed test points from c and holds a neuron with |<u,w_c>| >= {STRONG} (chance "
            f"level of its {cfg.expert_width} neurons at d = {cfg.d}: {chance_level(cfg.expert_width, cfg.d):.2f})"
            f" is >= {SPECIALISED_MIN}",
            **provenance_of(f"kawata2025/expert-specialisation{suffix}"),
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
