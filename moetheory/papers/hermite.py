"""Online spherical SGD on single-index models: samples to weak recovery against the dimension.

The Hermite chapter (``book/hermite.ipynb``) runs this experiment. Model: ``x ~ N(0, I_d)``,
``y = h_k(<w*, x>)`` with ``h_k = He_k / sqrt(k!)`` (information exponent ``k``); correlation loss
``-y h_k(<w, x>)``; one fresh sample per step, projected SGD on the unit sphere from a uniformly random start
(overlap ~ d^(-1/2)). Ben Arous, Gheissari and Jagannath (2021): weak recovery takes n ~ d (k = 1),
d log d (k = 2), d^(k-1) (k >= 3).

Step size: ``lr = eta * d^(-max(1, k/2))``. One step moves the overlap ``m`` by ``lr k m^(k-1)`` (signal)
and shrinks it by about ``lr^2 k d m / 2`` (the retraction after an O(sqrt(d)) noisy step), so the signal
wins at the start ``m ~ d^(-1/2)`` when ``lr <~ m^(k-2) / d = d^(-k/2)`` (k >= 2): the largest such step.
With it the escape takes ``int dm / (lr k m^(k-1)) ~ d^(k-1)`` steps for ``k >= 3`` and ``d log d`` for
``k = 2`` (derived in the chapter).

Performance: every (dimension, seed) pair is one row of a single ``(rows, d_max)`` tensor, smaller dimensions
zero-padded (the gradient stays in their subspace), so all of them advance in one batched step; rows that
cross the threshold (or their sample cap) are dropped between chunks, and a crossing later than its row's cap
within a chunk is not counted. By rotation invariance ``w* = e_1``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import sympy as sp
import torch

from moetheory import hermite, ledger, runtime
from moetheory.checks import MAX_SEED, check_float, check_int
from moetheory.hermite import hermite_torch
from moetheory.ledger import Claim
from moetheory.metrics import loglog_slope, slope_band
from moetheory.optim import spherical_sgd_
from moetheory.papers import Paper

MAX_SAMPLES = 2**53  # the most samples one run may draw: counts stay exact in float64 (and fit torch's int64)
THEORY_SLOPE = {1: 1.0, 3: 2.0}  # BAGJ: n ~ d^(max(1, k - 1)); k = 2 is d log d (slope fitted on the d grid)


def learning_rate(k: int, d: int, eta: float) -> float:
    """``eta * d^(-max(1, k/2))``: the largest step whose noise does not drown the signal at overlap
    d^(-1/2)."""
    return eta * d ** (-max(1.0, k / 2))


def sample_cap(k: int, d: int, eta: float, max_factor: float) -> int:
    """The most samples one run may use: ``max_factor / eta`` times d, d log d or d^(k-1)."""
    scale = d * math.log(d) if k == 2 else d ** max(1, k - 1)
    return int(math.ceil(max_factor / eta * scale))


@dataclass(frozen=True)
class Config:
    # input dimensions d (log-spaced; the slope is fitted over them)
    dims: tuple[int, ...] = (32, 64, 128, 256)
    exponents: tuple[int, ...] = (1, 2, 3)  # information exponents k of the links h_k
    n_seeds: int = 32  # independent runs per (k, d), batched in one tensor
    threshold: float = 0.5  # weak recovery: overlap <w, w*> >= threshold (|.| for even k)
    eta: tuple[float, ...] = (1.0, 0.5, 0.5)  # lr = eta * d^(-max(1, k/2)), one per exponent
    # sample cap per run: max_factor / eta * d^(k-1) (d log d for k = 2, d for k = 1)
    max_factor: float = 40.0
    # stop a dimension once this fraction of its seeds has crossed (the rest count as censored, > the median)
    stop_fraction: float = 1.0
    slope_tolerance: float = 0.25  # claims hold when |fitted slope - theory| <= this
    seed: int = 0  # base seed (python, numpy, torch)

    def __post_init__(self):
        if len(self.dims) < 2:
            raise ValueError(f"dims must list at least 2 dimensions to fit a slope; got {self.dims!r}")
        for d in self.dims:
            check_int("dims", d, 2, 1 << 16)
        if list(self.dims) != sorted(set(self.dims)):
            raise ValueError(f"dims must be strictly increasing; got {self.dims!r}")
        if not self.exponents:
            raise ValueError("exponents must list at least one information exponent")
        for k in self.exponents:
            check_int("exponents", k, 1, 6)
        if len(set(self.exponents)) < len(self.exponents):
            raise ValueError(f"exponents must be distinct; got {self.exponents!r}")
        if len(self.eta) != len(self.exponents):
            raise ValueError(f"eta must give one step scale per exponent ({len(self.exponents)}); "
                             f"got {self.eta!r}")
        for e in self.eta:
            check_float("eta", e, 0.0, low_open=True)
        check_int("n_seeds", self.n_seeds, 1)
        check_float("threshold", self.threshold, 0.0, 1.0, low_open=True, high_open=True)
        check_float("max_factor", self.max_factor, 0.0, low_open=True)
        check_float("stop_fraction", self.stop_fraction, 0.5, 1.0, low_open=True)
        check_float("slope_tolerance", self.slope_tolerance, 0.0, low_open=True)
        check_int("seed", self.seed, 0, MAX_SEED)
        cap, k = max((sample_cap(k, self.dims[-1], e, self.max_factor), k) for k, e in zip(self.exponents, self.eta))
        if cap > MAX_SAMPLES:
            raise ValueError(f"max_factor / eta * d^(k-1) (one run's sample cap) must be <= {MAX_SAMPLES:.3g}; "
                             f"got {cap:.3g} at d = {self.dims[-1]}, k = {k}")


PRESETS = {
    "tiny": Config(dims=(8, 16), n_seeds=4, max_factor=20.0),  # seconds: unit tests
    # notebook and CI: a dimension stops once 80% of its seeds crossed (the median and the quartiles stay exact,
    # and the slowest k* = 3 seeds no longer set the run time: 2.6x faster)
    "quick": Config(stop_fraction=0.8),
    # larger d and more seeds (GPU recommended); a dimension stops once 80% of its seeds crossed
    "paper": Config(dims=(64, 128, 256, 512), n_seeds=128, stop_fraction=0.8),
}


def config(scale: str) -> Config:
    """The ``tiny`` / ``quick`` / ``paper`` preset."""
    return PRESETS[runtime.check_scale(scale)]


@dataclass
class Result:
    config: Config
    samples: dict[int, np.ndarray]  # k -> (len(dims), n_seeds) samples to weak recovery (nan: cap reached)
    slopes: dict[int, float]  # k -> least-squares slope of log(median samples) against log d
    elapsed_s: float  # seconds (not in metrics(): the report records the run's time)
    device: str  # where it ran (not in metrics(): the report records it)

    def medians(self, k: int) -> np.ndarray:
        """Median samples to weak recovery per dimension (a censored run counts as +inf)."""
        return np.median(np.nan_to_num(self.samples[k], nan=np.inf), axis=1)

    def slope_band(self, k: int, level: float = 0.9) -> tuple[float, float]:
        """Percentile bootstrap interval of the fitted slope for exponent ``k``: the seeds of every dimension
        resampled independently (2,000 resamples, fixed seed; :func:`moetheory.metrics.slope_band`)."""
        return slope_band(self.config.dims, self.samples[k], level)[1:]

    def metrics(self) -> dict:
        return {
            "dims": list(self.config.dims),
            "slopes": {str(k): round(v, 4) for k, v in self.slopes.items()},
            "slope_band_90": {str(k): [round(v, 4) for v in self.slope_band(k)] for k in self.samples},
            "median_samples": {str(k): [float(v) for v in self.medians(k)] for k in self.samples},
            "censored_fraction": {str(k): float(np.isnan(s).mean()) for k, s in self.samples.items()},
            "lr_rule": "eta * d^(-max(1, k/2))",
            "eta": list(self.config.eta),
            "threshold": self.config.threshold,
        }


def _chunk_steps(rows: int, dim: int) -> int:
    """Steps per chunk: the chunk's samples (steps, rows, dim) stay under ~16 MB."""
    return int(max(16, min(512, (1 << 22) // max(1, rows * dim))))


def samples_to_recovery(k: int, dims, n_seeds: int, eta: float, threshold: float, max_factor: float,
                        generator: torch.Generator, device: torch.device,
                        stop_fraction: float = 1.0) -> np.ndarray:
    """Online spherical SGD for link h_k; ``(len(dims), n_seeds)`` samples until the overlap first reaches
    ``threshold`` (``nan`` if the run hits its sample cap first). All (d, seed) rows advance together."""
    dims_t = torch.tensor(dims, device=device).repeat_interleave(n_seeds)  # (rows,)
    d_max = max(dims)
    mask = (torch.arange(d_max, device=device) < dims_t[:, None]).float()  # (rows, d_max)
    lr = torch.tensor([learning_rate(k, d, eta) for d in dims], device=device).repeat_interleave(n_seeds)
    cap = torch.tensor([sample_cap(k, d, eta, max_factor) for d in dims], device=device)
    cap = cap.repeat_interleave(n_seeds)
    w = torch.randn(len(dims_t), d_max, generator=generator, device=device) * mask
    w /= w.norm(dim=-1, keepdim=True)  # uniform on each row's sphere; w* = e_1
    active = torch.arange(len(dims_t), device=device)  # rows still running
    hit = torch.full((len(dims_t),), float("nan"), device=device)
    done = 0
    while active.numel():
        steps = _chunk_steps(active.numel(), d_max)
        x = torch.randn(steps, active.numel(), d_max, generator=generator, device=device) * mask[active]
        overlaps = torch.empty(steps, active.numel(), device=device)
        w_a, lr_a = w[active], lr[active]
        y = hermite_torch(k, x[..., 0]) * lr_a  # (steps, rows): lr * y, with <w*, x> = x_1
        for s in range(steps):
            z = (x[s] * w_a).sum(-1)  # (rows,) <w, x>
            # lr * y * h_k'(<w, x>), h_k' = sqrt(k) h_(k-1)
            coef = y[s] * math.sqrt(k) * hermite_torch(k - 1, z)
            spherical_sgd_(w_a, -coef[:, None] * x[s], 1.0)  # gradient of -y h_k(<w, x>), lr folded in
            overlaps[s] = w_a[:, 0]
        if k % 2 == 0:
            overlaps = overlaps.abs()  # even links cannot tell w* from -w*
        sample = torch.arange(done + 1, done + steps + 1, device=device)  # (steps,) sample number of each step
        # a chunk may run past a row's cap (chunks are up to 512 steps): a crossing after the cap is not a recovery
        crossed = (overlaps >= threshold) & (sample[:, None] <= cap[active])
        # (rows,) first sample index at which the overlap crossed
        first = crossed.float().argmax(0) + done + 1
        reached = crossed.any(0)
        hit[active[reached]] = first[reached].to(hit.dtype)
        w[active] = w_a
        done += steps
        finished = (~hit.isnan()).reshape(len(dims), n_seeds).float().mean(1)  # (dims,) fraction crossed
        keep = (finished < stop_fraction).repeat_interleave(n_seeds)  # (rows,)
        active = active[~reached & (cap[active] > done) & keep[active]]
    return hit.reshape(len(dims), n_seeds).cpu().numpy()


def d_log_d_slope(dims) -> float:
    """The slope of log(d log d) against log d over ``dims``: what n ~ d log d looks like on our grid."""
    return loglog_slope(dims, np.asarray(dims) * np.log(dims))


def run(config: Config, device="auto", progress: bool = False) -> Result:
    """Samples to weak recovery for every exponent, dimension and seed; slopes fitted per exponent."""
    device = runtime.resolve_device(device)
    generator = runtime.seed_everything(config.seed)
    if device.type != "cpu":
        generator = torch.Generator(device=device).manual_seed(config.seed)
    start = time.perf_counter()
    samples, slopes = {}, {}
    pairs = list(zip(config.exponents, config.eta, strict=True))
    for k, eta in runtime.progress(pairs, desc="hermite", enabled=progress):
        samples[k] = samples_to_recovery(k, config.dims, config.n_seeds, eta, config.threshold,
                                         config.max_factor, generator, device, config.stop_fraction)
        # nan when a median is censored
        slopes[k] = loglog_slope(config.dims, np.median(np.nan_to_num(samples[k], nan=np.inf), axis=1))
    return Result(config, samples, slopes, time.perf_counter() - start, runtime.device_description(device))


_z = sp.Symbol("z", real=True)
STANDARD_LINKS = {  # claim slug -> (link, known information exponent)
    "relu": (sp.Max(_z, 0), 1),
    "abs": (sp.Abs(_z), 2),
    "sign": (sp.sign(_z), 1),
    "square": (_z**2, 2),
    "he3": (sp.hermite_prob(3, _z), 3),
    "he4": (sp.hermite_prob(4, _z), 4),
}
_BAGJ = "Ben Arous, Gheissari & Jagannath (JMLR 2021)"
PROVENANCE = {  # claim id -> (provenance, source): textbook facts and a third-party summary, no paper's table
    **{f"hermite/exponent-{slug}": (
        "derived",
        f"textbook Hermite expansion of {sp.sstr(link)} (a known value, derived again here with SymPy; not a "
        "number from a paper); "
        f"information exponent as defined by {_BAGJ}")
       for slug, (link, _) in STANDARD_LINKS.items()},
    **{f"hermite/sgd-slope-k{k}": (
        "third party",
        f"{_BAGJ}: online SGD weakly recovers with n ~ d (k* = 1), d log d (k* = 2), d^(k*-1) (k* >= 3), as "
        "summarised in public sources (their text not read here); the slope is the exponent of d")
       for k in sorted({2, *THEORY_SLOPE})},
}


def provenance_of(claim_id: str, config: dict | None = None) -> dict:
    """``provenance`` and ``source`` of a hermite claim (``config`` is not needed)."""
    return ledger.provenance_entry(PROVENANCE, claim_id)


def claims(result: Result) -> list[Claim]:
    """Exact information exponents of the standard links, and the fitted sample-complexity slopes."""
    out = []
    for slug, (link, known) in STANDARD_LINKS.items():
        value = hermite.information_exponent(link, _z, max_degree=8)
        statement = f"the information exponent of {sp.sstr(link)} is {known}"
        out.append(Claim(f"hermite/exponent-{slug}", statement,
                         known, value, value == known, criterion="exact SymPy value equals the known exponent",
                         **provenance_of(f"hermite/exponent-{slug}")))
    tol = result.config.slope_tolerance
    dims = result.config.dims
    for k, slope in result.slopes.items():
        if k == 2:
            target, paper = d_log_d_slope(dims), "n ~ d log d"
            crit = f"|slope - slope of d log d on our grid ({target:.2f})| <= {tol}"
        elif k in THEORY_SLOPE:
            target, paper = THEORY_SLOPE[k], THEORY_SLOPE[k]
            crit = f"|slope - {target:g}| <= {tol}"
        else:
            continue
        out.append(Claim(
            f"hermite/sgd-slope-k{k}",
            f"online SGD samples to overlap {result.config.threshold} grow like d^slope for a link with "
            f"k* = {k}",
            paper, round(slope, 3), bool(abs(slope - target) <= tol), criterion=crit + " (median over seeds)",
            **provenance_of(f"hermite/sgd-slope-k{k}")))
    return out


PAPER = Paper(name="hermite",
              title="Hermite analysis: information exponents and online-SGD sample complexity",
              config=config, run=run, claims=claims, provenance=provenance_of)
