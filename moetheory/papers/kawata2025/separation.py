"""The measured separation of the ``kawata2025`` chapter (section "The separation"): samples to recover w_g against d,
for the vanilla network and for the stagewise MoE, with a generic student activation.

Each network is checked on a geometric grid of steps counted from the START of its stage (:func:`geometric_grid`),
so the grid cannot set the slope the way the old linear grid over a d^2-long run did; a run that never reaches the
threshold within its cap is censored (``inf``). :func:`moetheory.metrics.slope_band` fits the log-log slope of the
median over seeds with a bootstrap band over seeds; :func:`separation_verdict` is the claim's criterion, fixed before
measuring.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from moetheory import runtime
from moetheory.activations import HERMITE_ACTIVATIONS, hermite_activation
from moetheory.checks import check_choice, check_int
from moetheory.metrics import overlaps, slope_band
from moetheory.papers.kawata2025.data import make_cluster_problem, sample_clusters
from moetheory.papers.kawata2025.extras import recorded_metrics
from moetheory.papers.kawata2025.model import prune, random_unit, route, router_step, sgd_step

__all__ = ["geometric_grid", "first_hit", "separation_verdict", "run_separation", "moe_samples", "sample_counts",
           "recorded_separation", "separation_setting", "noise_step_factor", "SLOPE_GAP_MIN", "NOISE_STAGES",
           "NOISE_STEP_D"]

SLOPE_GAP_MIN = 0.5  # criterion (fixed before measuring): the lower end of the band of vanilla slope - MoE slope
# must exceed half the predicted gap (k* + 1) - k* = 1; a gap whose band reaches below 0.5 does not count
PER_OCTAVE = 8  # grid points per doubling of the step count (a factor 2^(1/8) = 1.09 between checks)
NOISE_STAGES = ("stage1", "stage3")  # the MoE stages whose step run_separation(noise_step=...) can make noise-sized
NOISE_STEP_D = 8  # the d at which a noise-sized step equals the quick one (the separation's smallest d)


def noise_step_factor(d: int, k: int) -> float:
    """``(8 / d)^(k/2 - 1)``: the quick step ``lr / d`` times this is ``lr / 8 x (8 / d)^(k/2)``, the noise-sized step
    ``eta d^(-k/2)`` of a direction of exponent ``k`` (the ``hermite`` chapter), equal to the quick step at
    :data:`NOISE_STEP_D`; with it online SGD needs about ``d^(k-1)`` samples (``benchmarks/``' ``vanilla-small-step``
    is ``k = 4``)."""
    check_int("d", d, 1)
    check_int("k", k, 1)
    return (NOISE_STEP_D / d) ** (k / 2 - 1)


def geometric_grid(n_steps: int, per_octave: int = PER_OCTAVE, offset: float = 0.0) -> np.ndarray:
    """Steps ``round(2^((j + offset) / per_octave))``, ``j = 0, 1, ...``, up to ``n_steps`` (unique, from 1): the same
    checks for every stage and every d, truncated only by the cap."""
    check_int("n_steps", n_steps, 1)
    check_int("per_octave", per_octave, 1)
    j = np.arange(0, per_octave * math.log2(n_steps) + 2)
    steps = np.unique(np.round(2.0 ** ((j + offset) / per_octave)).astype(int))
    return steps[(steps >= 1) & (steps <= n_steps)]


def first_hit(values: np.ndarray, grid: np.ndarray, threshold: float) -> np.ndarray:
    """``(S,)`` the first grid step at which ``values (S, T)`` reaches ``threshold`` (``inf``: never)."""
    hit = np.asarray(values) >= threshold
    return np.where(hit.any(1), np.asarray(grid, dtype=float)[hit.argmax(1)], np.inf)


def sample_counts(rows) -> np.ndarray:
    """``(D, S)`` floats from a separation entry, ``None`` (a record's censored count) read as ``inf``."""
    return np.array([[math.inf if v is None else float(v) for v in row] for row in rows])


def moe_samples(separation: dict) -> np.ndarray:
    """``(D, S)`` the MoE's samples to recover w_g: stage 1's count plus stage 3's, each from its stage's start (the
    router's fixed budget of stage 2 is not counted); ``inf`` when either is censored."""
    return sample_counts(separation["stage1"]) + sample_counts(separation["stage3"])


def recorded_separation(cfg, report) -> dict | None:
    """The separation of a record ``report`` (:func:`moetheory.reproduce.recorded`) made with the config ``cfg``
    (``None`` when there is no record or it was made with another config): a chapter reads it instead of
    re-running it."""
    found = recorded_metrics(cfg, report, ("separation",))
    return None if found is None else found["separation"]


def separation_verdict(dims, vanilla_times, moe_times, n_boot: int = 2000, seed: int = 0) -> dict:
    """The criterion of ``kawata2025/separation-slope``: the 90% bootstrap band (seeds resampled) of the vanilla slope
    minus the MoE slope (:func:`moetheory.metrics.slope_band` of the medians); ``holds`` when its lower end exceeds
    :data:`SLOPE_GAP_MIN`. A censored MoE median makes the gap ``-inf`` (no evidence for the MoE)."""
    gap, low, high = slope_band(dims, vanilla_times, 0.9, minus=moe_times, n_resamples=n_boot, seed=seed)
    return {"gap": gap, "gap_low": low, "gap_high": high, "holds": bool(low > SLOPE_GAP_MIN)}


@torch.no_grad()
def run_separation(cfg, device="auto", *, stage1_activation: str | None = None,
                   noise_step: tuple[str, ...] = ()) -> dict:
    """Samples to recover w_g at each d of ``cfg.separation_dims`` (``cfg`` a :class:`~.Config`), seeds batched:

    - vanilla: ``separation_width`` neurons on all data; samples until the best ``|<u, w_g>| >= threshold``;
    - MoE: stage 1 as in the pipeline (:func:`~.stage1_schedule`), samples until every w_c has a neuron with
      ``|<u, w_c>| >= weak``; the router (stage 2, ``stage2_steps`` at every d, not measured); stage 3 with
      ``separation_expert_width`` neurons per expert, samples until the best ``|<u, w_g>| >= threshold``.

    Each count is read on :func:`geometric_grid` from its stage's start; a cap (``separation_budget`` steps
    times ``(d / 32)^k*`` for vanilla and ``(d / 32)^(k*-1)`` for stage 3, both at least 64) only censors.
    Returns lists per d of ``(S,)`` sample counts (``inf``: censored): ``vanilla``, ``stage1``, ``stage3``.
    ``stage1_activation`` (a name of :data:`~moetheory.activations.HERMITE_ACTIVATIONS`; ``None``: the separation's
    student) changes the student of stage 1 alone: an ablation of the chapter (``benchmarks/``), not a preset.
    ``noise_step`` (names of :data:`NOISE_STAGES`; ``()``: the quick steps) gives each named stage the noise-sized
    step of its exponent k* (its step times :func:`noise_step_factor` ``(d, k*)``) and divides its cap by the same
    factor (stage 1: its length), the same step-times-steps budget as the quick step's: an ablation, not a preset.
    """
    if stage1_activation is not None:
        check_choice("stage1_activation", stage1_activation, HERMITE_ACTIVATIONS)
    if not isinstance(noise_step, tuple | list) or len(set(noise_step)) < len(noise_step):
        raise ValueError(f"noise_step must be a tuple of distinct names of {NOISE_STAGES}; got {noise_step!r}")
    for i, name in enumerate(noise_step):
        check_choice(f"noise_step[{i}]", name, NOISE_STAGES)
    dev = runtime.resolve_device(device)
    out = {"dims": list(cfg.separation_dims), "vanilla": [], "stage1": [], "stage3": []}
    for d in cfg.separation_dims:
        for key, counts in zip(("vanilla", "stage1", "stage3"),
                               _one_dimension(cfg, d, dev, stage1_activation, tuple(noise_step)), strict=True):
            out[key].append(counts.tolist())
    return out


def _train(u, n_steps, lr, step, draw, probe, threshold, stop=True) -> np.ndarray:
    """``n_steps`` of ``step(u, x, y, lr)`` on fresh batches ``draw()``; ``(S,)`` first steps on
    :func:`geometric_grid` at which ``probe(u) (S,)`` reaches ``threshold``. ``stop``: end once every seed has (later
    checks cannot change a first hit)."""
    grid, best = geometric_grid(n_steps), []
    checks = frozenset(int(t) for t in grid)
    for t in range(1, n_steps + 1):
        step(u, *draw(), lr)
        if t in checks:
            best.append(probe(u))
            if stop and (best[-1] >= threshold).all():
                break
    best = np.stack(best, 1)
    return first_hit(best, grid[: best.shape[1]], threshold)


def separation_setting(cfg, d: int, dev):
    """``(config, generator, problem)`` of the separation at dimension ``d``: ``cfg`` with the separation's student,
    seeds and ``d``, the global seed and a generator set from its seed, and its problem (as :func:`run_separation`
    draws them, so that an ablation in ``benchmarks/`` sees the same initialisation and stream)."""
    c = runtime.replace_config(cfg, d=d, activation=cfg.separation_activation, n_seeds=cfg.separation_seeds,
                               more_clusters=(), separation_dims=())
    runtime.seed_everything(c.seed)
    gen = torch.Generator(device=dev).manual_seed(c.seed)
    problem = make_cluster_problem(d, c.n_clusters, rho=c.rho, layout=c.layout, noise_std=c.noise_std, seed=c.seed)
    return c, gen, problem


def _one_dimension(cfg, d: int, dev, stage1_activation=None, noise_step=()) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """``(S,)`` sample counts at dimension ``d``: vanilla, stage 1, stage 3 (:func:`run_separation`)."""
    from moetheory.papers.kawata2025 import REFERENCE_D, STRONG, WEAK, clip_norm, stage1_schedule

    c, gen, problem = separation_setting(cfg, d, dev)
    real = dict(dtype=torch.get_default_dtype(), device=dev)
    w_g, w_c = torch.tensor(problem.global_dir[None], **real), torch.tensor(problem.local_dirs, **real)
    act, clip, s, k, m = hermite_activation(c.activation), clip_norm(c), c.n_seeds, problem.k_star, c.n_experts
    scale = d / REFERENCE_D

    def draw(n=c.batch):
        return sample_clusters(problem, n, s, generator=gen, device=dev)[:2]

    def plain(student):
        def step(u, x, y, lr):
            sgd_step(u, x.unsqueeze(1), y.unsqueeze(1), student, lr, clip)

        return step

    # vanilla: separation_width neurons on all data
    u_van = random_unit((s, 1, c.separation_width), d, gen, dev)
    cap_v = max(64, round(c.separation_budget * scale**k))
    vanilla = _train(u_van, cap_v, c.lr / d, plain(act), draw,
                     lambda u: overlaps(u[:, 0], w_g)[..., 0].max(-1).values.cpu().numpy(), STRONG)
    # MoE stage 1: one-neuron experts on their schedule; the count is the first weak recovery of every w_c
    lr1, t1 = stage1_schedule(c)
    if "stage1" in noise_step:
        f = noise_step_factor(d, k)
        lr1, t1 = lr1 * f, max(1, round(t1 / f))
    u1 = random_unit((s, 1, m), d, gen, dev)
    act1 = act if stage1_activation is None else hermite_activation(stage1_activation)
    stage1 = _train(u1, t1, lr1, plain(act1), draw,
                    lambda u: overlaps(u[:, 0], w_c).max(1).values.min(-1).values.cpu().numpy(), WEAK, stop=False)
    # stage 2: the router with the experts frozen (a fixed budget, not measured), then pruning
    router = torch.zeros(s, m, d, device=dev)
    for _ in range(c.stage2_steps):
        router_step(router, u1[:, 0], *draw(), act1, c.router_lr / c.stage2_steps, c.router_clip)
    x_fit, _ = draw(c.n_fit)
    keep = torch.ones(s, m, dtype=torch.bool, device=dev)
    keep = prune(router, torch.nn.functional.one_hot(route(x_fit, router, keep), m).to(x_fit.dtype).mean(1),
                 c.prune_cos)
    # stage 3: fresh neurons per expert on routed data, centred by each expert's running mean
    u3 = random_unit((s, m, c.separation_expert_width), d, gen, dev)
    sums, counts = torch.zeros(s, m, d, device=dev), torch.zeros(s, m, device=dev)

    def routed(u, x, y, lr):
        mask = torch.nn.functional.one_hot(route(x, router, keep), m).transpose(1, 2).to(x.dtype)  # (S, M, B)
        n_rows = mask.sum(-1)
        sums.add_(torch.einsum("smb,sbd->smd", mask, x))
        counts.add_(n_rows)
        xc = x.unsqueeze(1) - (sums / counts.clamp_min(1).unsqueeze(-1)).unsqueeze(2)
        sgd_step(u, xc, y.unsqueeze(1).expand(-1, m, -1), act, lr, clip, mask / n_rows.clamp_min(1).unsqueeze(-1))

    def probe3(u):
        ov = overlaps(u, w_g)[..., 0].masked_fill(~keep[..., None], 0.0)  # (S, M, K), pruned experts 0
        return ov.flatten(1).max(-1).values.cpu().numpy()

    lr3, cap3 = c.lr / d, c.separation_budget * scale ** (k - 1)
    if "stage3" in noise_step:
        f = noise_step_factor(d, k)
        lr3, cap3 = lr3 * f, cap3 / f
    stage3 = _train(u3, max(64, round(cap3)), lr3, routed, draw, probe3, STRONG)
    return vanilla * c.batch, stage1 * c.batch, stage3 * c.batch
