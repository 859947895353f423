"""Makkuva, Viswanath, Kannan & Oh (ICML 2019, PMLR 97:4304-4313), "Breaking the gridlock in Mixture-of-Experts:
Consistent and Efficient Algorithms" (bib key ``makkuva2019``; arXiv 1802.07417 v2/v3, same title, list the authors as
Makkuva, Oh, Kannan, Viswanath), first circulated as arXiv 1802.07417 v1 (February 2018), "Globally Consistent
Algorithms for Mixture of Experts" by Makkuva, Kannan & Viswanath (bib key ``makkuva2018``): consistent estimation of
a gated mixture of experts.

Wires the tensor method (:mod:`.moments`), gating EM, joint EM, Adam and plain gradient descent (:mod:`.gated_em`)
into the chapter's experiments (``book/makkuva2019.ipynb``): error against n, the orthogonality assumption panel,
failure fractions of random-init EM against tensor initialisation in hard regimes, gating EM from starts of very
different norms with the true regressors (:mod:`.global_em`), the assumption panel and the error against n for ReLU
and sigmoid experts, and the Airfoil Self-Noise analogue (:mod:`.airfoil`; it needs the real data, found through
``$MOETHEORY_DATA`` or the cache, and is "not run" without them). The claims, with their criteria and provenance, are
in :mod:`.claims`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from moetheory import runtime
from moetheory.checks import MAX_SEED, check_choice, check_float, check_int
from moetheory.metrics import permutation_match, unit
from moetheory.papers import Paper
from moetheory.papers.makkuva2019 import airfoil, global_em, moments
from moetheory.papers.makkuva2019.claims import (  # noqa: F401  (the chapter's names: mk.FAIL_THRESHOLD, mk.slope)
    FAIL_THRESHOLD,
    GLOBAL_SPREAD,
    NOISE_FLOOR,
    PROVENANCE,
    SPREAD_FLOOR,
    airfoil_summary,
    baseline_comparison,
    claims,
    gating_ratio,
    link_slopes,
    provenance_of,
    slope,
)
from moetheory.papers.makkuva2019.gated_em import adam_mle, gating_em, gd_mle, joint_em, random_start
from moetheory.papers.makkuva2019.gated_moe import random_parameters, sample_batch


@dataclass(frozen=True)
class Regime:
    """A hard regime for the failure-fraction experiment."""

    name: str  # label in tables
    d: int  # input dimension
    n_experts: int  # k
    n: int  # samples
    collapsed: bool = False  # random-init EM starts with every expert at (nearly) one direction


@dataclass(frozen=True)
class Config:
    d: int = 10  # input dimension (the digest's setting)
    n_experts: int = 3  # k
    noise_std: float = 0.1  # sigma, known to every estimator
    gating_norm: float = 2.0  # ||w_i|| for i < k (w_k = 0)
    sample_sizes: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 100_000)  # n grid of the main sweep
    n_seeds: int = 5  # independent instances per n (parameters and data redrawn)
    adam_max_n: int = 10_000  # Adam is run for n up to this (full batch; autograd is the slow part)
    adam_steps: int = 600  # Adam steps (lr 0.05); enough to reach the MLE at these sizes; plain GD gets as many
    gd_step: float = 0.5  # plain gradient descent: step gd_step * sigma^2 on the regressors, gd_step on the gating
    em_max_iter: int = 200  # EM iterations (joint and gating)
    em_tol: float = 1e-5  # EM stops when ||change|| <= tol (1 + ||params||), per seed
    panel_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)  # n grid of the orthogonality panel (tensor only)
    panel_seeds: int = 3  # instances per n in the panel
    panel_overlap: float = 1.0  # "not orthogonal": gating row i = (orthogonal part, norm gating_norm) + overlap a_i
    panel_links: tuple[str, ...] = ("relu", "sigmoid")  # the panel again for these expert links (linear: above),
    # and the error against n (tensor, tensor+EM, joint EM from a random start) at the sweep's sizes up to adam_max_n
    failure_seeds: int = 24  # instances (and random starts) per hard regime
    regimes: tuple[Regime, ...] = (
        Regime("n/d = 30", 10, 3, 300),
        Regime("n/d = 100", 10, 3, 1_000),
        Regime("k = 5", 10, 5, 3_000),
        Regime("collapsed start", 10, 3, 3_000, collapsed=True),
    )  # hard regimes for random-init EM vs tensor initialisation
    global_experts: tuple[int, ...] = (2, 3)  # k of the global-convergence check (k = 2: the paper's setting)
    global_n: int = 4_000  # samples per instance there (d as above)
    global_seeds: int = 2  # instances per k
    global_norms: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)  # start norms, in units of ||W_true||_F
    global_directions: int = 2  # random start directions per norm
    airfoil_splits: int = 5  # random train/test splits of the Airfoil analogue (seeds seed, seed + 1, ...)
    seed: int = 0  # base seed: parameters, data and random starts of every stage

    def __post_init__(self):
        check_int("d", self.d, 3)
        check_int("n_experts", self.n_experts, 2, self.d - 1)  # the gating rows need room orthogonal to span(A)
        check_float("noise_std", self.noise_std, 1e-6, 1e6)  # beyond: the moments and EM over- or underflow
        check_float("gating_norm", self.gating_norm, 0.0, 1e6)  # beyond: the softmax gate overflows (NaN)
        check_float("panel_overlap", self.panel_overlap, 0.0, low_open=True)
        for g in self.panel_links:
            check_choice("panel_links", g, moments.NONLINEARITIES)
        for name in ("sample_sizes", "panel_sizes"):
            sizes = getattr(self, name)
            for s in sizes:
                check_int(name, s, 2 * self.d)
            if len(sizes) < 2 or list(sizes) != sorted(set(sizes)):
                raise ValueError(f"{name} must be an increasing tuple of at least 2 sizes >= 2 d; got {sizes!r}")
        for name in ("n_seeds", "panel_seeds", "failure_seeds", "adam_steps", "em_max_iter"):
            check_int(name, getattr(self, name), 1)
        check_int("adam_max_n", self.adam_max_n, 0)
        check_float("gd_step", self.gd_step, 0.0, 1.9, low_open=True)  # beyond 2 / curvature: GD diverges
        check_int("airfoil_splits", self.airfoil_splits, 0)
        check_float("em_tol", self.em_tol, 0.0)
        for i, reg in enumerate(self.regimes):
            if not isinstance(reg, Regime):
                raise ValueError(f"regimes[{i}] must be a Regime(name, d, n_experts, n); got {reg!r}")
            check_int(f"regimes[{i}].d", reg.d, 3)
            check_int(f"regimes[{i}].n_experts", reg.n_experts, 2, reg.d - 1)
            check_int(f"regimes[{i}].n", reg.n, 2 * reg.d)
        if not self.global_experts:
            raise ValueError("global_experts must name at least one k")
        for k in self.global_experts:
            check_int("global_experts", k, 2, self.d - 1)
        check_int("global_n", self.global_n, 2 * self.d)
        check_int("global_seeds", self.global_seeds, 1)
        check_int("global_directions", self.global_directions, 1)
        if not self.global_norms:
            raise ValueError("global_norms must hold at least one start norm")
        for norm in self.global_norms:
            check_float("global_norms", norm, 0.0, 1e6, low_open=True)  # beyond: the softmax gate overflows
        check_int("seed", self.seed, 0, MAX_SEED - self.airfoil_splits)


PRESETS = {
    # seconds: unit tests
    "tiny": Config(d=6, n_experts=2, sample_sizes=(2_000, 8_000, 32_000), n_seeds=2, adam_max_n=2_000,
                   adam_steps=200, em_max_iter=50, panel_sizes=(4_000, 64_000), panel_seeds=2, failure_seeds=4,
                   regimes=(Regime("n/d = 50", 6, 2, 300), Regime("collapsed start", 6, 2, 1_000, True)),
                   global_n=1_000, global_seeds=1, global_norms=(0.01, 1.0, 100.0), global_directions=1,
                   airfoil_splits=0),
    "quick": Config(),  # the notebook
    # more instances at the quick sizes: 16 instances where the quick run has 5 (the gating ratio, the slopes), 4x the
    # hard-regime runs, twice the panel instances, gating EM from more starts at a larger n, ten Airfoil splits. 22
    # minutes on one thread of a loaded 2-core CPU (measured with GD and the ReLU/sigmoid sweep; the quick run: 5.6,
    # 200 s of CPU time). The earlier preset (n
    # to 1e6, Adam to 1e5 with 1,500 steps, 200 runs per regime) would take hours there: one gating EM at n = 1e5
    # costs ~4 s per instance on one shared thread (measured), joint EM more.
    "paper": Config(n_seeds=16, failure_seeds=96, panel_seeds=6, global_n=20_000, global_seeds=3,
                    global_directions=3, airfoil_splits=10),
}


def config(scale: str) -> Config:
    """The ``tiny`` / ``quick`` / ``paper`` preset (:data:`PRESETS`)."""
    return PRESETS[runtime.check_scale(scale)]


def errors(a_hat, w_hat, a_true, w_true) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: regressor error min_pi ||A_hat[pi] - A|| (unit rows) and the gating error under the same
    permutation, after re-centring the estimate on the row matched to the reference expert."""
    a_hat, a_true = unit(a_hat).cpu().numpy(), a_true.cpu().numpy()
    err_a, err_w = [], []
    for s in range(a_true.shape[0]):  # post-processing (assignment problems), not a hot path
        err, perm = permutation_match(a_hat[s], a_true[s])  # perm[i]: estimated row matched to true expert i
        err_a.append(err)
        if w_hat is not None:
            w = w_hat[s].cpu().numpy()[perm]
            err_w.append(float(np.linalg.norm(w - w[-1] - w_true[s].cpu().numpy())))
    return np.array(err_a), np.array(err_w) if w_hat is not None else None


@dataclass
class Result:
    config: Config
    device: str  # where it ran (not in metrics(): the report records it)
    sweep: dict  # method -> {"err_a": (len(n), seeds), "err_w": ..., "n": [...]}
    panel: dict  # "orthogonal"/"not orthogonal" -> (len(panel n), panel seeds) tensor errors
    failures: list  # one dict per regime
    global_em: dict  # str(k) -> global_em.global_convergence(...) output (gating EM from many starts, true A)
    constants: dict  # nonlinearity -> sigma -> {"package": ..., "independent": ..., "route": ...}
    timings: dict  # seconds per stage (not in metrics(): a run's time is its report's)
    elapsed_s: float  # seconds (not in metrics(): the report records the run's time)
    links: dict = field(default_factory=dict)  # link -> the panel's dict for that expert link (panel_links)
    link_sweep: dict = field(default_factory=dict)  # link -> method -> {"n", "err_a", "err_w"}, as sweep
    airfoil: list | None = None  # one dict per Airfoil split (airfoil.compare); None: the data were not found

    def metrics(self) -> dict:
        return {
            "sweep": _sweep_metrics(self.sweep),
            "panel": {k: _tolist(v) for k, v in self.panel.items()},
            "panel_sizes": list(self.config.panel_sizes),
            "failures": self.failures,
            "global_em": {k: {**v, "spread": [float(f"{s:.3g}") for s in v["spread"]], "error": _tolist(v["error"])}
                          for k, v in self.global_em.items()},
            "constants": self.constants,
            "links": {g: {k: _tolist(v) for k, v in p.items()} for g, p in self.links.items()},
            "link_sweep": {g: _sweep_metrics(sw) for g, sw in self.link_sweep.items()},
            "airfoil": None if self.airfoil is None else [{k: round(v, 6) for k, v in row.items()}
                                                          for row in self.airfoil],
            "gating_ratio": _rounded(gating_ratio(self.sweep)),
            "baselines": _rounded(baseline_comparison(self.sweep, self.failures)),
        }


def _tolist(v):
    return np.round(np.asarray(v, float), 6).tolist() if v is not None else None


def _sweep_metrics(sweep: dict) -> dict:
    return {m: {k: _tolist(v) if k != "n" else list(v) for k, v in d.items()} for m, d in sweep.items()}


def _sweep_arrays(sweep: dict) -> dict:
    """A sweep as :func:`_sweep` returns it, from its record (:func:`_sweep_metrics`)."""
    return {m: {k: (np.array(v) if v is not None else None) if k != "n" else list(v) for k, v in d.items()}
            for m, d in sweep.items()}


def from_record(report) -> Result:
    """The :class:`Result` a recorded run (:func:`moetheory.reproduce.recorded`) holds, its arrays rounded to 6
    decimals as recorded: what the chapter reads instead of re-running the quick preset."""
    m = report.metrics
    cfg = Config(**{k: tuple(Regime(**r) for r in v) if k == "regimes" else tuple(v) if isinstance(v, list) else v
                    for k, v in report.config.items()})
    return Result(cfg, report.device, _sweep_arrays(m["sweep"]), {k: np.array(v) for k, v in m["panel"].items()},
                  m["failures"], {k: {**v, "error": np.array(v["error"])} for k, v in m["global_em"].items()},
                  m["constants"], {}, report.elapsed_s, {g: {k: np.array(v) for k, v in p.items()}
                                                         for g, p in m["links"].items()},
                  {g: _sweep_arrays(sw) for g, sw in m.get("link_sweep", {}).items()}, m.get("airfoil"))


def _rounded(tree):
    """Floats in a nested dict/list to 4 significant digits (a record's ratios, stable across CPU dispatches)."""
    if isinstance(tree, dict):
        return {k: _rounded(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_rounded(v) for v in tree]
    return float(f"{tree:.4g}") if isinstance(tree, float) else tree


def _sweep(cfg: Config, dev, gen, progress) -> dict:
    """Error against n for the tensor method, tensor+gating EM, gating EM given A, joint EM, tensor->joint EM, Adam and
    plain gradient descent (both from joint EM's random start, for n <= adam_max_n)."""
    names = ("tensor", "tensor+EM", "EM given A", "joint EM", "tensor->joint EM", "Adam", "GD")
    out = {m: {"n": [], "err_a": [], "err_w": []} for m in names}
    k, d, sig, it, tol = cfg.n_experts, cfg.d, cfg.noise_std, cfg.em_max_iter, cfg.em_tol
    for n in runtime.progress(cfg.sample_sizes, desc="error vs n", enabled=progress):
        a, w = (t.to(dev) for t in random_parameters(cfg.n_seeds, d, k, cfg.gating_norm, gen))
        x, y = sample_batch(n, a, w, "linear", sig, gen)
        a0, w0 = (t.to(dev) for t in random_start(cfg.n_seeds, k, d, gen))
        a_tensor = moments.estimate_regressors(x, y, k, "linear", sig, generator=gen)["regressors"]
        fits = {
            "tensor": (a_tensor, None),
            "tensor+EM": (a_tensor, gating_em(x, y, a_tensor, w0, "linear", sig, max_iter=it, tol=tol)[0]),
            "EM given A": (a, gating_em(x, y, a, w0, "linear", sig, max_iter=it, tol=tol)[0]),
            "joint EM": joint_em(x, y, a0, w0, "linear", sig, max_iter=it, tol=tol)[:2],
            "tensor->joint EM": joint_em(x, y, a_tensor, w0, "linear", sig, max_iter=it, tol=tol)[:2],
        }
        if n <= cfg.adam_max_n:
            fits["Adam"] = adam_mle(x, y, a0, w0, "linear", sig, steps=cfg.adam_steps, lr=0.05)
            fits["GD"] = gd_mle(x, y, a0, w0, "linear", sig, steps=cfg.adam_steps, step=cfg.gd_step)
        for m, (a_hat, w_hat) in fits.items():
            err_a, err_w = errors(a_hat, w_hat, a, w)
            out[m]["n"].append(n)
            out[m]["err_a"].append(err_a)
            out[m]["err_w"].append(err_w)
    return {m: {"n": v["n"], "err_a": np.array(v["err_a"]),
                "err_w": np.array(v["err_w"]) if v["err_w"] and v["err_w"][0] is not None else None}
            for m, v in out.items()}


def _panel(cfg: Config, dev, gen, progress, nonlinearity: str = "linear") -> dict:
    """Tensor-method error with gating orthogonal to span(A) (the assumption) and with gating leaning on A."""
    out = {}
    for label, overlap in (("orthogonal", 0.0), ("not orthogonal", cfg.panel_overlap)):
        rows = []
        for n in runtime.progress(cfg.panel_sizes, desc=f"panel ({nonlinearity}, {label})", enabled=progress):
            a, w = (t.to(dev) for t in random_parameters(cfg.panel_seeds, cfg.d, cfg.n_experts, cfg.gating_norm,
                                                         gen, overlap))
            x, y = sample_batch(n, a, w, nonlinearity, cfg.noise_std, gen)
            a_hat = moments.estimate_regressors(x, y, cfg.n_experts, nonlinearity, cfg.noise_std, generator=gen)
            rows.append(errors(a_hat["regressors"], None, a, w)[0])
            del x, y
        out[label] = np.array(rows)
    return out


def _failures(cfg: Config, dev, gen, progress) -> list:
    """Fraction of runs whose regressor error exceeds FAIL_THRESHOLD: random-init joint EM vs tensor-init joint EM
    (and the tensor estimate alone), one fresh instance per seed."""
    out = []
    for reg in runtime.progress(cfg.regimes, desc="hard regimes", enabled=progress):
        s = cfg.failure_seeds
        a, w = (t.to(dev) for t in random_parameters(s, reg.d, reg.n_experts, cfg.gating_norm, gen))
        x, y = sample_batch(reg.n, a, w, "linear", cfg.noise_std, gen)
        a0, w0 = (t.to(dev) for t in random_start(s, reg.n_experts, reg.d, gen, collapsed=reg.collapsed))
        a_t = moments.estimate_regressors(x, y, reg.n_experts, "linear", cfg.noise_std, generator=gen)["regressors"]
        opts = {"max_iter": cfg.em_max_iter, "tol": cfg.em_tol}
        errs = {
            "random-init EM": errors(joint_em(x, y, a0, w0, "linear", cfg.noise_std, **opts)[0], None, a, w)[0],
            "tensor": errors(a_t, None, a, w)[0],
            "tensor-init EM": errors(joint_em(x, y, a_t, w0, "linear", cfg.noise_std, **opts)[0], None, a, w)[0],
        }
        row = {"regime": reg.name, "d": reg.d, "k": reg.n_experts, "n": reg.n, "seeds": s}
        for m, e in errs.items():
            row[f"{m} fail"] = float(np.mean(e > FAIL_THRESHOLD))
            row[f"{m} median err"] = float(np.median(e))
        out.append(row)
    return out


def _global(cfg: Config, dev, gen, progress) -> dict:
    """Gating EM with the true regressors from starts of norm 0.01x to 100x ||W|| (:mod:`.global_em`), per k."""
    return {str(k): global_em.global_convergence(cfg.d, k, cfg.global_n, cfg.global_seeds, cfg.global_norms,
                                                 cfg.global_directions, gating_norm=cfg.gating_norm,
                                                 noise_std=cfg.noise_std, generator=gen, device=dev,
                                                 max_iter=cfg.em_max_iter, tol=cfg.em_tol)
            for k in runtime.progress(cfg.global_experts, desc="gating EM from many starts", enabled=progress)}


def _links(cfg: Config, dev, gen, progress) -> dict:
    """The assumption panel (:func:`_panel`: consistency with orthogonal gating, bias without) for ReLU and sigmoid
    experts, as the paper's model allows; same sizes and instances as the linear panel."""
    return {g: _panel(cfg, dev, gen, progress, g) for g in cfg.panel_links}


def _link_sweep(cfg: Config, dev, gen, progress) -> dict:
    """Per link of ``panel_links``: error against n at the sweep's sizes up to ``adam_max_n`` for the tensor method,
    tensor+gating EM and joint EM from a random start (the EMs with the link's Gauss-Newton M-step)."""
    k, d, sig, opts = cfg.n_experts, cfg.d, cfg.noise_std, {"max_iter": cfg.em_max_iter, "tol": cfg.em_tol}
    sizes = [n for n in cfg.sample_sizes if n <= cfg.adam_max_n]
    out = {}
    for g in cfg.panel_links:
        rows = {m: {"n": [], "err_a": [], "err_w": []} for m in ("tensor", "tensor+EM", "joint EM")}
        for n in runtime.progress(sizes, desc=f"error vs n ({g})", enabled=progress):
            a, w = (t.to(dev) for t in random_parameters(cfg.n_seeds, d, k, cfg.gating_norm, gen))
            x, y = sample_batch(n, a, w, g, sig, gen)
            a0, w0 = (t.to(dev) for t in random_start(cfg.n_seeds, k, d, gen))
            a_t = moments.estimate_regressors(x, y, k, g, sig, generator=gen)["regressors"]
            fits = {"tensor": (a_t, None), "tensor+EM": (a_t, gating_em(x, y, a_t, w0, g, sig, **opts)[0]),
                    "joint EM": joint_em(x, y, a0, w0, g, sig, **opts)[:2]}
            for m, (a_hat, w_hat) in fits.items():
                err_a, err_w = errors(a_hat, w_hat, a, w)
                rows[m]["n"].append(n)
                rows[m]["err_a"].append(err_a)
                rows[m]["err_w"].append(err_w)
        out[g] = {m: {"n": v["n"], "err_a": np.array(v["err_a"]),
                      "err_w": np.array(v["err_w"]) if m != "tensor" else None} for m, v in rows.items()}
    return out


def _constants() -> dict:
    """Package constants against an independent route: SymPy exact (linear, ReLU) or Gauss-Hermite (sigmoid)."""
    out = {}
    for g, route in (("linear", "quad"), ("sigmoid", "gauss-hermite"), ("relu", "exact")):
        out[g] = {}
        for sigma in (0.1, 0.5):
            pkg = moments.transform_constants(g, sigma)
            ind = moments.transform_constants(g, sigma, route)
            out[g][str(sigma)] = {"package": pkg, "independent": ind, "route": route}
    return out


def run(config: Config, device="auto", progress: bool = False) -> Result:
    """The error-vs-n sweep, the orthogonality panel, the hard regimes and gating EM from many starts (one random
    stream, seeds batched; the last stage draws last, so the earlier ones see the stream they always saw), then the
    transform constants by two routes, then the panel and the error against n for the other expert links (drawn
    last), then the Airfoil analogue (its own seeds)."""
    dev = runtime.resolve_device(device)
    runtime.seed_everything(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    start, timings = time.perf_counter(), {}
    stages = (("sweep", _sweep), ("panel", _panel), ("failures", _failures), ("global", _global), ("links", _links),
              ("link_sweep", _link_sweep))
    results = {}
    for name, fn in stages:
        t0 = time.perf_counter()
        results[name] = fn(config, dev, gen, progress)
        timings[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    constants = _constants()
    timings["constants"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    real = airfoil.splits_or_none(config.airfoil_splits, config.seed)
    timings["airfoil"] = time.perf_counter() - t0
    return Result(config, runtime.device_description(dev), results["sweep"], results["panel"], results["failures"],
                  results["global"], constants, timings, time.perf_counter() - start, results["links"],
                  results["link_sweep"], real)


PAPER = Paper(name="makkuva2019", title="Makkuva et al. 2019: consistent tensor + EM estimation of a gated MoE",
              config=config, run=run, claims=claims, provenance=provenance_of)
