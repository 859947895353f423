"""Kawata et al. (ICML 2025): an MoE detects latent clusters of single-index models; a vanilla net does not.

The ``kawata2025`` chapter derives why (the global direction's signal cancels across clusters, see
:mod:`.exponents`) and runs the experiment below, with C = 2 and, for every preset, again with C = 4
(``more_clusters``). The stagewise MoE procedure is OUR reading of the paper's algorithm (its full text was not
consulted); its pieces live in :mod:`.model`:

1. ``n_experts`` one-neuron experts trained on all data (online spherical SGD, correlation loss, a per-neuron
   clip scaled as sqrt(d / batch)) weakly recover the per-cluster directions w_c, with the step and the number of
   steps of :func:`stage1_schedule` (scaled with C and d); the old fixed clip and schedule are
   :data:`ABLATIONS` (the chapter's section "Ablation: the old stage 1");
2. a linear softmax router trained by SGD with the experts frozen, ascending E[y sum_m pi_m(x) sigma_m(x)];
   experts whose router rows are near-parallel are pruned; routing is top-1;
3. ``expert_width`` fresh neurons per expert trained on routed data, inputs centred by a running mean;
4. each expert's output layer by ridge regression (a convex fit).
The vanilla net trains ``vanilla_width`` neurons alike on all data; seeds are batched (one loop, over SGD steps).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from moetheory import runtime
from moetheory.activations import HERMITE_ACTIVATIONS, hermite_activation
from moetheory.checks import MAX_SEED, check_choice, check_float, check_int
from moetheory.metrics import overlaps, slope_band  # the chapter fits its slopes with K.slope_band
from moetheory.papers import Paper
from moetheory.papers.kawata2025.claims import (
    CHANCE_FACTOR,
    PROVENANCE,
    ROUTER_MIN,
    SPECIALISED_MIN,
    STRONG,
    WEAK,
    claims,
    expert_overlap,
    expert_specialisation,
    provenance_of,
    purity_chance,
    separation_slopes,
)
from moetheory.papers.kawata2025.data import MEAN_LAYOUTS, check_geometry, make_cluster_problem, sample_clusters
from moetheory.papers.kawata2025.exponents import (
    effective_exponent,
    global_correlation,
    mean_basis,
    mixture_exponent,
    setting_exponent,
    task_correlations,
    task_exponent,
)
from moetheory.papers.kawata2025.extras import recorded_extras, run_extras
from moetheory.papers.kawata2025.model import chance_level, random_unit, sgd_step
from moetheory.papers.kawata2025.separation import (
    NOISE_STAGES,
    NOISE_STEP_D,
    SLOPE_GAP_MIN,
    geometric_grid,
    moe_samples,
    noise_step_factor,
    recorded_separation,
    run_separation,
    sample_counts,
    separation_verdict,
)

__all__ = [  # the chapter reads K.<name>, the exponents of moetheory.papers.kawata2025.exponents included
    "Config", "PRESETS", "config", "cluster_config", "Result", "run", "samples_to_recover", "STRONG", "CHANCE_FACTOR",
    "ROUTER_MIN", "SPECIALISED_MIN", "expert_overlap", "expert_specialisation", "purity_chance",
    "PROVENANCE", "provenance_of", "claims", "PAPER", "stage1_schedule", "ABLATIONS", "ablation",
    "SCHEDULES", "CLIP_UNITS", "clip_norm", "train_stage1", "stage1_recovery",
    "effective_exponent", "global_correlation", "mixture_exponent", "setting_exponent", "mean_basis",
    "task_correlations", "task_exponent", "chance_level", "run_separation", "geometric_grid",
    "separation_verdict", "SLOPE_GAP_MIN", "moe_samples", "recorded_separation", "sample_counts", "separation_slopes",
    "NOISE_STAGES", "NOISE_STEP_D", "noise_step_factor", "run_extras", "recorded_extras", "slope_band", "run_settings",
]


# ------------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class Config:
    d: int = 32  # input dimension
    n_clusters: int = 2  # C
    layout: str = "antipodal"  # cluster means: v_2 = -v_1, or orthonormal v_c
    rho: float = 3.0  # mean shift, x ~ N(rho v_c, I)
    noise_std: float = 0.1  # label noise zeta
    activation: str = "h3"  # student activation (h3 = He_3/sqrt(6), the link itself)
    n_seeds: int = 3  # independent runs, batched
    batch: int = 32  # online SGD mini-batch (fresh samples each step)
    lr: float = 0.5  # step size times d (lr / d per step; stage 1: lr / d x 2 / C, see stage1_schedule)
    clip: float = 10.0  # per-neuron tangent-gradient norm clip of every neuron's SGD, in units of sqrt(d / batch)
    # (the batch gradient's noise grows so): it cuts only the rare heavy-tailed batches that would throw every
    # neuron onto one sample; 0 = none. The old fixed clip at norm 5 is the "clip5" ablation (ABLATIONS)
    clip_units: str = "noise"  # "noise": clip x sqrt(d / batch); "absolute": clip itself, for any d and batch
    schedule: str = "scaled"  # stage 1: "scaled" with d and C (stage1_schedule); "fixed": lr / d, stage1_steps
    vanilla_width: int = 68  # neurons of the vanilla network
    n_experts: int = 8  # one-neuron experts in stage 1 (several per cluster, so that each w_c is found)
    stage1_steps: int = 3000  # stage 1 (experts weakly recover w_c) at d = 32, C = 2; scaled (stage1_schedule)
    stage2_steps: int = 1000  # stage 2: router SGD
    router_lr: float = 4.0  # total router step: lr per step is router_lr / stage2_steps (stays near-linear)
    router_clip: float = 5.0  # norm clip of each router row's batch gradient
    prune_cos: float = 0.9  # prune an expert whose router row has cosine above this with a kept one
    expert_width: int = 16  # fresh neurons per expert in stage 3
    stage3_steps: int = 3000  # stage 3: experts on routed data
    centre: bool = True  # stage 3: inputs centred by each expert's running mean (False: the raw inputs)
    ridge: float = 1e-3  # ridge penalty of the output layers (times the number of fit samples)
    n_fit: int = 8192  # samples for the convex output-layer fits
    n_test: int = 8192  # test samples for the MSE
    n_checkpoints: int = 30  # evaluations over training
    seed: int = 0  # everything (problem directions, initialisation, data)
    # also run these C (orthogonal means, n_experts per cluster kept), claims "-c<C>"
    more_clusters: tuple[int, ...] = (4,)
    # the measured separation (separation.run_separation; claim separation-slope): samples to recover w_g against d
    separation_dims: tuple[int, ...] = (8, 12, 16, 24, 32)  # () = not run; at least two for a slope
    separation_seeds: int = 8  # seeds per d (batched): the band resamples them
    separation_activation: str = "h3+h4"  # a generic student: a vanilla neuron's exponent along w_g is finite
    separation_width: int = 16  # vanilla neurons (chance level of 16 at d = 8: 0.68, below the 0.8 threshold)
    separation_expert_width: int = 2  # stage-3 neurons per expert (8 experts x 2 = the vanilla width)
    separation_budget: int = 16000  # steps at d = 32 before a run is censored; x (d/32)^k* vanilla, ^(k*-1) stage 3
    # the chapter's variants and ablations (extras.run_extras), run with the record so that the chapter reads them
    # (metrics variants, ablation_runs, stage1_ablations); none enters a claim; () = not run
    variants: tuple[str, ...] = ("h3+h4", "relu")  # students of full runs in the main setting
    ablation_runs: tuple[str, ...] = ("no-centring",)  # ABLATIONS run as full pipelines in the main setting
    cluster_ablation_runs: tuple[str, ...] = ("old-stage1",)  # ABLATIONS run so at each C of more_clusters
    stage1_ablations: tuple[str, ...] = ("clip5", "no-clip", "old-stage1")  # stage 1 alone, beside the default
    stage1_seeds: int = 4  # seeds of those stage-1-alone runs (at C = n_clusters and each C of more_clusters)

    def __post_init__(self):
        check_int("d", self.d, 4)
        check_int("n_clusters", self.n_clusters, 2, self.d)
        check_choice("layout", self.layout, MEAN_LAYOUTS)
        check_choice("activation", self.activation, HERMITE_ACTIVATIONS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("clip_units", self.clip_units, CLIP_UNITS)
        if not isinstance(self.centre, bool):
            raise ValueError(f"centre must be True or False; got {self.centre!r}")
        for name in ("n_seeds", "batch", "vanilla_width", "n_experts", "stage1_steps", "stage2_steps",
                     "expert_width", "stage3_steps", "n_fit", "n_test", "separation_seeds", "separation_width",
                     "separation_expert_width", "separation_budget"):
            check_int(name, getattr(self, name), 1)
        check_int("n_checkpoints", self.n_checkpoints, 2)
        check_int("stage1_seeds", self.stage1_seeds, 1)
        for name, allowed in (("variants", HERMITE_ACTIVATIONS), ("ablation_runs", ABLATIONS),
                              ("cluster_ablation_runs", ABLATIONS), ("stage1_ablations", ABLATIONS)):
            if not isinstance(getattr(self, name), tuple):
                raise ValueError(f"{name} must be a tuple of names; got {getattr(self, name)!r}")
            for i, v in enumerate(getattr(self, name)):
                check_choice(f"{name}[{i}]", v, allowed)
        check_int("seed", self.seed, 0, MAX_SEED)
        for name in ("rho", "noise_std"):  # larger: the cubic links and the MSE overflow (NaN claims at 1e300)
            check_float(name, getattr(self, name), 0.0, 1e6)
        check_float("ridge", self.ridge, 1e-12)  # a positive penalty: an expert that receives no data still solves
        for name in ("lr", "router_lr", "router_clip"):
            check_float(name, getattr(self, name), 0.0, low_open=True)
        check_float("clip", self.clip, 0.0)
        check_float("prune_cos", self.prune_cos, 0.0, 1.0)
        check_geometry(self.d, self.n_clusters, self.layout)
        check_choice("separation_activation", self.separation_activation, HERMITE_ACTIVATIONS)
        if not isinstance(self.separation_dims, tuple) or len(self.separation_dims) == 1:
            raise ValueError(f"separation_dims must be a tuple of () or at least two dimensions; "
                             f"got {self.separation_dims!r}")
        for i, d in enumerate(self.separation_dims):
            check_int(f"separation_dims[{i}]", d, 4)
            check_geometry(d, self.n_clusters, self.layout)
        if not isinstance(self.more_clusters, tuple):
            raise ValueError(f"more_clusters must be a tuple of cluster counts; got {self.more_clusters!r}")
        for i, c in enumerate(self.more_clusters):  # orthogonal means need d >= 2 C + 1
            check_int(f"more_clusters[{i}]", c, 2, (self.d - 1) // 2)
        if len(set(self.more_clusters)) < len(self.more_clusters) or self.n_clusters in self.more_clusters:
            raise ValueError(f"more_clusters must be distinct and differ from n_clusters = {self.n_clusters}; "
                             f"got {self.more_clusters!r}")

    @property
    def total_steps(self) -> int:
        return stage1_schedule(self)[1] + self.stage2_steps + self.stage3_steps


SCHEDULES = ("scaled", "fixed")
CLIP_UNITS = ("noise", "absolute")


def clip_norm(cfg: Config) -> float | None:
    """The per-neuron clip of ``cfg`` as a norm (``None``: no clip)."""
    if not cfg.clip:
        return None
    return cfg.clip * (math.sqrt(cfg.d / cfg.batch) if cfg.clip_units == "noise" else 1.0)


REFERENCE_D, REFERENCE_C = 32, 2  # the setting in which ``lr`` and ``stage1_steps`` are given


@functools.cache
def _k_star() -> int:
    """k* of :func:`~moetheory.data.make_cluster_problem`'s default links (the config does not change them)."""
    return make_cluster_problem(REFERENCE_D).k_star


def stage1_schedule(cfg: Config) -> tuple[float, int]:
    """(step size per SGD step, number of steps) of stage 1.

    ``"scaled"``: the step ``lr / d`` shrinks as 2 / C (C clusters share the signal) and the number of steps
    grows as ``(d / 32)^(k*-1) x C / 2``: online SGD needs about d^(k*-1) samples for k* >= 3 (the ``hermite``
    chapter), and a C-times-smaller share of the data per cluster. ``"fixed"``: ``lr / d`` and ``stage1_steps``.
    """
    if cfg.schedule == "fixed":
        return cfg.lr / cfg.d, cfg.stage1_steps
    c = cfg.n_clusters / REFERENCE_C
    steps = cfg.stage1_steps * (cfg.d / REFERENCE_D) ** (_k_star() - 1) * c
    return cfg.lr / (cfg.d * c), max(1, round(steps))


ABLATIONS = {  # name -> config fields; the chapter's ablation section runs each against the default
    "clip5": dict(clip=5.0, clip_units="absolute"),  # the old per-neuron clip at norm 5 for any d, alone
    "no-clip": dict(clip=0.0),  # no clip at all: one heavy-tailed batch can throw every neuron onto one sample
    # the old stage 1: clip 5, lr / d and stage1_steps steps for any d and C
    "old-stage1": dict(clip=5.0, clip_units="absolute", schedule="fixed"),
    "no-centring": dict(centre=False),  # stage 3 on raw inputs
}
"""Named ablations (:func:`ablation`): each changes one cause, or (``old-stage1``) the old combination."""


def ablation(cfg: Config, name: str) -> Config:
    """``cfg`` with the fields of :data:`ABLATIONS` ``[name]``."""
    return runtime.replace_config(cfg, **ABLATIONS[check_choice("ablation", name, ABLATIONS)])


def cluster_config(cfg: Config, n_clusters: int) -> Config:
    """The setting of ``cfg`` with ``n_clusters`` orthogonal cluster means and as many stage-1 experts per cluster
    (every other field, budgets included, unchanged); the runs behind the ``-c<C>`` claims."""
    n_experts = max(1, round(cfg.n_experts * n_clusters / cfg.n_clusters))
    return runtime.replace_config(cfg, n_clusters=n_clusters, layout="orthogonal", n_experts=n_experts,
                                  more_clusters=(), separation_dims=())


PRESETS = {  # each also runs C = 4 clusters with orthogonal means (``more_clusters``)
    # seconds: unit tests
    "tiny": Config(d=12, n_seeds=2, vanilla_width=8, stage1_steps=400, stage2_steps=30, stage3_steps=60,
                   expert_width=4, n_fit=512, n_test=512, n_checkpoints=3, separation_dims=(8, 12),
                   separation_seeds=2, separation_budget=400, variants=("relu",), cluster_ablation_runs=(),
                   stage1_ablations=("clip5",), stage1_seeds=2),
    "quick": Config(),  # the notebook, d = 32
    # d = 128 (our choice: the paper's dimensions were not read) with every stage (d / 32)^2 = 16 times longer
    # (online SGD needs ~d^(k*-1) samples for k* = 3; stage 1 by stage1_schedule, 48000 steps at C = 2)
    # (the chapter's variants and ablations are not run at this scale)
    "paper": Config(d=128, n_seeds=8, stage1_steps=3000, stage2_steps=16000, stage3_steps=48000, n_fit=32768,
                    n_test=32768, variants=(), ablation_runs=(), cluster_ablation_runs=(), stage1_ablations=()),
}


def config(scale: str) -> Config:
    """The ``tiny`` / ``quick`` / ``paper`` preset (:data:`PRESETS`)."""
    return PRESETS[runtime.check_scale(scale)]


# ------------------------------------------------------------------------------------------------ training
@dataclass
class Result:
    config: Config
    samples: np.ndarray  # (T,) samples seen at each checkpoint (shared by both networks)
    vanilla_overlap: np.ndarray  # (S, T, N, C + 1) |<u, w_c>|, last column w_g
    moe_overlap: np.ndarray  # (S, T, M or E*K, C + 1) stage-1 neurons, then stage-3 neurons
    moe_stage: np.ndarray  # (T,) stage of each MoE checkpoint (1, 2, 3)
    router_alignment: np.ndarray  # (S, T2, C) max over experts of cos(router row, v_c) during stage 2
    router_alignment_final: np.ndarray  # (S, C) over kept experts after pruning
    router_cos: np.ndarray  # (S, M, C) cos(router row m, v_c) at the end of stage 2 (NaN: pruned expert)
    router_boundary: np.ndarray  # (S, C, C) model.boundary_alignment: the router's boundaries vs the Bayes ones
    router_ceiling: float  # model.zero_sum_ceiling: router_alignment_final of the ideal router, rows summing to 0
    vanilla_mse: np.ndarray  # (S, T)
    moe_mse: np.ndarray  # (S, T)
    routing_purity: np.ndarray  # (S,) fraction of test points routed to their cluster's majority expert
    routing_counts: np.ndarray  # (S, C, M) test points of cluster c routed to expert m (top-1, after pruning)
    n_kept: np.ndarray  # (S,) experts kept after pruning
    stage1_overlap: np.ndarray  # (S, M, C + 1) |<u, w>| of the stage-1 experts when stage 1 ends
    stage1_mean_overlap: np.ndarray  # (S, M, C) |<u, v_c>| of the stage-1 experts when stage 1 ends
    chance_level: float  # E max_j |<u_j, w_g>| over vanilla_width random unit neurons
    global_exponent: object  # effective exponent of w_g for a vanilla neuron (sympy Integer or oo; None: ReLU)
    k_star: int
    task_exponent: object  # the task's exponent along w_g (task_exponent: k* + 1 here; sympy Integer or oo)
    label_variance: float  # Var y, exact (ClusterSingleIndex.label_variance); the noise floor is noise_std^2
    elapsed_s: float  # seconds (not in metrics(): the report records the run's time)
    device: str  # where it ran (not in metrics(): the report records it)
    separation: dict | None = None  # separation.run_separation(config) (``separation_dims``), else None
    extra: dict = field(default_factory=dict)  # C -> Result of ``cluster_config(config, C)`` (``more_clusters``)
    chapter_runs: dict = field(default_factory=dict)  # extras.run_extras(config): the chapter's variants, ablations

    def metrics(self) -> dict:
        end = lambda a: np.round(a[:, -1].astype(float), 4).tolist()  # noqa: E731
        recover = samples_to_recover(self)
        return {
            "samples": int(self.samples[-1]),
            "vanilla_best_global_overlap": end(self.vanilla_overlap[..., -1].max(-1)),
            "moe_best_global_overlap": end(np.nanmax(self.moe_overlap[..., -1], -1)),
            "vanilla_best_local_overlap": np.round(
                self.vanilla_overlap[:, -1, :, :-1].max(1).astype(float), 4
            ).tolist(),
            "moe_best_local_overlap": np.round(
                np.nanmax(self.moe_overlap[:, -1, :, :-1], 1).astype(float), 4
            ).tolist(),
            "stage1_best_local_overlap": np.round(self.stage1_overlap[..., :-1].max(1).astype(float), 4).tolist(),
            "stage1_recovered": int(stage1_recovery(self.stage1_overlap[..., :-1]).sum()),  # of S x C pairs
            "stage1_max_mean_overlap": np.round(self.stage1_mean_overlap.max((1, 2)).astype(float), 4).tolist(),
            "router_alignment_before_pruning": np.round(self.router_alignment[:, -1].astype(float), 4).tolist(),
            "router_alignment": np.round(self.router_alignment_final.astype(float), 4).tolist(),
            "router_boundary_alignment": np.round(np.nan_to_num(self.router_boundary, nan=1.0), 4).tolist(),
            "router_ideal_alignment": round(self.router_ceiling, 4),
            "routing_purity": np.round(self.routing_purity.astype(float), 4).tolist(),
            "routing_purity_chance": np.round(purity_chance(self.routing_counts), 4).tolist(),
            "routing_counts": np.asarray(self.routing_counts).astype(int).tolist(),
            "expert_specialised": expert_specialisation(self).astype(int).tolist(),  # (S, C)
            "experts_kept": self.n_kept.tolist(),
            "vanilla_test_mse": end(self.vanilla_mse),
            "moe_test_mse": end(self.moe_mse),
            "noise_floor": round(self.config.noise_std**2, 6),  # zeta^2: the Bayes MSE
            "label_variance": round(self.label_variance, 6),  # Var y: the MSE of predicting the mean
            "moe_samples_to_recover": [None if np.isnan(v) else int(v) for v in recover],
            "chance_level": round(self.chance_level, 4),
            "global_exponent": str(self.global_exponent),
            "task_exponent": str(self.task_exponent),
            "k_star": self.k_star,
            **({} if self.separation is None else {"separation": _finite(self.separation)}),
            **{f"c{c}": r.metrics() for c, r in self.extra.items()},
            **self.chapter_runs,
        }


def run(config: Config, device="auto", progress: bool = False) -> Result:
    """Train the vanilla network and the stagewise MoE on the same online stream (seeds batched), in the setting
    of ``config`` and then in ``cluster_config(config, C)`` for each C of ``config.more_clusters``
    (:func:`run_settings`); then the separation (``separation_dims``) and the chapter's variants and ablations
    (:func:`~.extras.run_extras`, ``Result.chapter_runs``)."""
    dev = runtime.resolve_device(device)
    result = run_settings(config, dev, progress)
    if config.separation_dims:
        result.separation = run_separation(config, dev)
    result.chapter_runs = run_extras(config, dev)
    return result


def run_settings(config: Config, device="auto", progress: bool = False) -> Result:
    """:func:`run` without the separation and the chapter's variants and ablations (the chapter reads those two
    from the record): the setting of ``config``, then ``cluster_config(config, C)`` in ``Result.extra``."""
    from moetheory.papers.kawata2025.pipeline import run_setting

    dev = runtime.resolve_device(device)
    result = run_setting(config, dev, progress)
    result.extra = {c: run_setting(cluster_config(config, c), dev, progress) for c in config.more_clusters}
    return result


def _finite(separation: dict) -> dict:
    """JSON-safe copy of a separation dict (censored counts ``inf`` -> ``None``)."""
    fix = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
    return {key: [[fix(v) for v in row] for row in rows] if key != "dims" else rows for key, rows in separation.items()}


@torch.no_grad()
def train_stage1(cfg: Config, device="auto") -> np.ndarray:
    """Stage 1 alone (``n_experts`` one-neuron experts, online SGD on all data with :func:`stage1_schedule`), as in
    :func:`run` but on its own stream; returns ``|<u, w_c>|`` at its end, ``(S, M, C)``."""
    dev = runtime.resolve_device(device)
    runtime.seed_everything(cfg.seed)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    problem = make_cluster_problem(
        cfg.d, cfg.n_clusters, rho=cfg.rho, layout=cfg.layout, noise_std=cfg.noise_std, seed=cfg.seed
    )
    act, (lr1, t1) = hermite_activation(cfg.activation), stage1_schedule(cfg)
    u1 = random_unit((cfg.n_seeds, 1, cfg.n_experts), cfg.d, gen, dev)
    for _ in range(t1):
        x, y, _ = sample_clusters(problem, cfg.batch, cfg.n_seeds, generator=gen, device=dev)
        sgd_step(u1, x.unsqueeze(1), y.unsqueeze(1), act, lr1, clip_norm(cfg))
    dirs = torch.tensor(problem.local_dirs, dtype=u1.dtype, device=dev)
    return overlaps(u1[:, 0], dirs).cpu().numpy()


def stage1_recovery(local_overlap: np.ndarray, threshold: float = WEAK) -> np.ndarray:
    """``(S, C)`` booleans: some stage-1 neuron has ``|<u, w_c>| >= threshold`` (``local_overlap (S, M, C)``)."""
    return np.asarray(local_overlap).max(1) >= threshold


def samples_to_recover(result: Result, threshold: float = 0.8) -> np.ndarray:
    """Per seed, the first checkpoint's samples at which the MoE's best ``|<u, w_g>|`` reaches ``threshold`` or nan."""
    best = np.nanmax(result.moe_overlap[..., -1], -1)  # (S, T)
    hit = best >= threshold
    return np.where(hit.any(1), result.samples[hit.argmax(1)], np.nan)


# ------------------------------------------------------------------------------------------------ claims
PAPER = Paper(
    name="kawata2025",
    title="Kawata et al. 2025: MoE detect and learn latent cluster structure",
    config=config,
    run=run,
    claims=claims,
    provenance=provenance_of,
)
