"""Wang & E (2025), the expressive power of MoE: the chapter's experiments and claims (chapter wang2025).

Seven experiments, all with the training recipe that third-party notes give for the paper's appendix (Adam, lr 1e-3,
batch 128, squared loss; the appendix itself was not read) and seeds (and widths) batched in one slot axis:

1. construction: the untrained MoE of Corollary 4.9 on a circle in R^D (rate in m, versus E);
2. Experiment I: a 1-layer 4-expert MoE on a circle in R^D for several ambient D (randomly embedded, or zero
   padded as in the paper: ``Config.exp1_embedding``), beside dense nets matched on active and on total parameters;
3. Experiment II (:mod:`.experiment2`): 2-layer x 3-expert (deep) against 1-layer x 6-expert (shallow) MoE and a
   dense net over a width sweep, evaluated at several training budgets, on the paper's Figure 3 target (tuple
   output, the default; sum and product readings), with a parallel control, the jump target as a labelled
   extension, and the exactly routed construction as the approximation-limited reference;
4. a jump: dense ReLU net against a 2-expert MoE, both judged by their exact supremum error (:mod:`.pieces`);
5. a spiral: linear gate against MLP gate against two MoE layers;
6. beyond the paper (:mod:`.cube`): the Figure 3 pieces on a larger cube [0, 4]^3 (64 cells, 12 subfunctions), deep
   against shallow MoE, dense nets matched on total and on active parameters and a block-separable dense net;
7. the product reading of Experiment II's target at convergence (decaying step size): deep, parallel, dense.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from moetheory import runtime
from moetheory.checks import MAX_SEED, check_choice, check_float, check_int
from moetheory.metrics import loglog_slope  # noqa: F401 (the chapter calls wang2025.loglog_slope)
from moetheory.papers import Paper
from moetheory.papers.wang2025 import manifolds, pieces
from moetheory.papers.wang2025.bounds import moe_parameters
from moetheory.papers.wang2025.claims import (  # noqa: F401 (re-exported: the package's public names)
    EMBEDDING_TEXT,
    GROWTH_LEVEL,
    GROWTH_MAX,
    PAPER_EXP1,
    PAPER_EXP2_DEEP,
    PAPER_EXP2_SHALLOW,
    PROVENANCE,
    claims,
    construction_slopes,
    dimension_growth,
    exp1_ratio,
    provenance_of,
)
from moetheory.papers.wang2025.cube import cube_slopes, run_cube, run_cube_construction, run_product
from moetheory.papers.wang2025.deep_moe import (
    DenseNet,
    StackedMoE,
    circle_state,
    construct_circle_moe,
    evaluate,
    train_regression,
)
from moetheory.papers.wang2025.experiment2 import TARGETS as EXP2_TARGETS
from moetheory.papers.wang2025.experiment2 import exp2_slopes, run_construction2, run_exp2

STEPS = ("construction", "exp1", "exp2", "jump", "spiral", "cube", "product")  # new steps at the end (seeds)
# Seeds of a run with Config.seed = s (s = 0 reproduces the recorded runs): training inputs s + 1; the random
# embedding of the circle and the eq. (4) target s; the spiral's pieces s + 7; step i of STEPS seeds python, numpy
# and torch (initialisation, minibatches) with s * len(STEPS) + i, so that no two runs share a stream.
MAX_RUN_SEED = (MAX_SEED - len(STEPS) + 1) // len(STEPS)


@dataclass(frozen=True)
class Config:
    n_seeds: int = 3  # independent initialisations per model, trained in one batched step
    seed: int = 0  # base seed: data, embedding, targets, initialisation and minibatches (0: the recorded runs)
    lr: float = 1e-3  # Adam learning rate (third-party notes of the paper's appendix; not read)
    batch_size: int = 128  # minibatch per slot (third-party notes of the paper's appendix; not read)
    n_train: int = 8192  # training points (the paper's count is not stated in the main text)
    construction_dim: int = 64  # ambient D of the constructed MoE
    construction_experts: tuple[int, ...] = (2, 4, 8, 16)  # E of the construction
    construction_widths: tuple[int, ...] = (8, 16, 32, 64, 128)  # m of the construction
    exp1_dims: tuple[int, ...] = (16, 32, 64, 128)  # ambient dimensions D (the paper's)
    exp1_width: int = 10  # expert width of the 1-4-MoE (the paper's)
    exp1_experts: int = 4  # experts (the paper's)
    exp1_iterations: int = 2000  # Adam steps (third-party notes of the paper's appendix; not read)
    exp1_embedding: str = "random"  # circle in R^D: random orthonormal rows, or "zero-pad" (the paper's)
    exp2_widths: tuple[int, ...] = (8, 16, 32, 64)  # expert widths m of the sweep (paper: 16..128)
    exp2_iterations: int = 2000  # Adam steps of the longest budget (third-party recipe: 5000)
    exp2_budgets: tuple[int, ...] = (500, 1000, 2000)  # steps at which every Experiment II model is evaluated
    exp2_grid: int = 150  # test grid points per axis on [0, 3]^2 (L-infinity and MSE)
    exp2_arms: tuple[str, ...] = ()  # paper-literal combine weights of extra deep MoEs on the tuple target: "hard"
    #   (weight 1, so the random initial router gets no gradient and stays frozen), "straight" (straight-through)
    jump: float = 1.0  # jump size J
    jump_width: int = 32  # expert width of the 2-expert MoE for the jump
    jump_iterations: int = 2000  # Adam steps
    spiral_pieces: int = 4  # arcs of the spiral (experts)
    spiral_width: int = 16  # expert width
    spiral_iterations: int = 1000  # Adam steps
    test_points: int = 8192  # test grid size on curves (circle, interval, spiral)
    exp2_targets: tuple[str, ...] = EXP2_TARGETS  # Experiment II targets: "tuple" (the paper's) and our readings
    cube_widths: tuple[int, ...] = (8, 16, 32)  # expert widths of the larger cube (ours); () skips the step
    cube_experts: int = 4  # E of the larger cube [0, E]^L
    cube_layers: int = 3  # L of the larger cube
    cube_iterations: int = 2000  # Adam steps of every cube model
    cube_grid: int = 20  # test grid points per axis on [0, E]^L
    product_width: int = 32  # expert width of the product run at convergence (ours)
    product_iterations: int = 10000  # its Adam steps (cosine decay); 0 skips the step
    product_final_lr: float = 0.01  # the step size at the last step, as a fraction of lr

    def __post_init__(self):
        check_int("n_seeds", self.n_seeds, 1, 64)
        check_int("seed", self.seed, 0, MAX_RUN_SEED)
        check_float("lr", self.lr, 0.0, 1.0, low_open=True)
        for name in ("batch_size", "exp1_width", "exp1_experts", "jump_width", "spiral_width", "exp2_grid"):
            check_int(name, getattr(self, name), 1)
        for name in ("n_train", "test_points"):  # the jump and spiral generators need two points
            check_int(name, getattr(self, name), 2)
        check_int("construction_dim", self.construction_dim, 2)  # a circle embeds in R^D for D >= 2
        for name in ("exp1_iterations", "exp2_iterations", "jump_iterations", "spiral_iterations"):
            check_int(name, getattr(self, name), 0)
        check_int("spiral_pieces", self.spiral_pieces, 2)
        check_choice("exp1_embedding", self.exp1_embedding, manifolds.EMBEDDINGS)
        if len(set(self.exp2_arms)) < len(self.exp2_arms):
            raise ValueError(f"exp2_arms must not repeat an arm; got {self.exp2_arms!r}")
        for arm in self.exp2_arms:
            check_choice("exp2_arms", arm, ("hard", "straight"))
        check_float("jump", self.jump, 0.0, low_open=True)
        if not self.exp2_targets or len(set(self.exp2_targets)) < len(self.exp2_targets):
            raise ValueError(f"exp2_targets must be distinct and non-empty; got {self.exp2_targets!r}")
        for target in self.exp2_targets:
            check_choice("exp2_targets", target, EXP2_TARGETS)
        if "tuple" not in self.exp2_targets:
            raise ValueError(f"exp2_targets must include 'tuple' (the paper's, which the claims test); got "
                             f"{self.exp2_targets!r}")
        for name in ("cube_experts", "cube_layers"):
            check_int(name, getattr(self, name), 2, 8)
        check_int("cube_iterations", self.cube_iterations, 1)
        check_int("cube_grid", self.cube_grid, 1)
        check_int("product_width", self.product_width, 1)
        if check_int("product_iterations", self.product_iterations, 0) in range(1, 10):
            raise ValueError(f"product_iterations must be 0 (the step off) or an integer >= 10; got "
                             f"{self.product_iterations!r}")
        check_float("product_final_lr", self.product_final_lr, 0.0, 1.0, low_open=True)
        budgets = self.exp2_budgets
        if (not budgets or list(budgets) != sorted(set(budgets)) or budgets[-1] != self.exp2_iterations
                or check_int("exp2_budgets", budgets[0], 1) < 1):
            raise ValueError(f"exp2_budgets must be increasing integers >= 1 ending at exp2_iterations "
                             f"({self.exp2_iterations}); got {budgets!r}")
        for name in ("construction_experts", "construction_widths", "exp1_dims", "exp2_widths", "cube_widths"):
            values = getattr(self, name)
            if name == "cube_widths" and not values:
                continue  # the cube step is off
            if len(set(values)) < len(values) or len(values) < 2 or any(check_int(name, v, 1) < 2 for v in values):
                raise ValueError(f"{name} must hold at least two distinct integers >= 2 (a sweep); "
                                 f"got {values!r}")


PRESETS = {
    # seconds: unit tests
    "tiny": Config(n_seeds=2, n_train=512, construction_experts=(4, 8), construction_widths=(8, 16),
                   exp1_dims=(4, 16, 64), exp1_iterations=30, exp2_widths=(4, 8), exp2_iterations=30,
                   exp2_budgets=(10, 30), exp2_grid=30,
                   jump_iterations=30, spiral_iterations=30, test_points=512, cube_widths=(4, 8), cube_iterations=20,
                   cube_grid=6, product_width=4, product_iterations=20),
    "quick": Config(n_seeds=5, exp2_grid=100),  # the record the notebook reads
    # the paper's widths and D, the third-party notes' iterations; Experiment II on the paper's tuple target only
    # (the scalar readings are ours), with the paper-literal arms; the cube and the product at convergence (ours)
    # are off, to fit 30 minutes of one CPU thread
    "paper": Config(n_seeds=5, exp2_widths=(16, 32, 64, 128), exp2_iterations=5000,
                    exp2_budgets=(1000, 2000, 5000), exp2_arms=("hard", "straight"), exp2_targets=("tuple",),
                    spiral_width=32, spiral_iterations=2000, cube_widths=(), product_iterations=0),
}


def config(scale: str) -> Config:
    """The ``tiny`` / ``quick`` / ``paper`` preset (:data:`PRESETS`)."""
    return PRESETS[runtime.check_scale(scale)]


@dataclass
class Result:
    config: Config
    construction_linf: np.ndarray  # (E, m) L-infinity error of the constructed MoE
    exp1: dict = field(default_factory=dict)  # model -> {"linf", "mse": (D, seeds)}, "params": model -> (D,)
    exp1_arms: dict = field(default_factory=dict)  # the other embedding(s) of :data:`manifolds.EMBEDDINGS` -> exp1
    exp2: dict = field(default_factory=dict)  # target -> model -> {"linf", "mse", "rmse": (budgets, widths, seeds)}
    exp2_params: dict = field(default_factory=dict)  # "tuple" / "scalar" -> model -> total parameters per width
    exp2_construction: dict = field(default_factory=dict)  # "tuple" / "sum" -> {"linf", "mse": (widths,)}
    jump: dict = field(default_factory=dict)  # model -> {"linf", "mse", "sup": (seeds,)}; moe: "offset", "outside"
    spiral: dict = field(default_factory=dict)  # model -> {"linf", "mse": (seeds,)}
    cube: dict = field(default_factory=dict)  # output -> model -> {"linf", "mse", "rmse": (widths, seeds)}; {}: off
    cube_params: dict = field(default_factory=dict)  # output -> cube.cube_parameters key -> per width
    cube_construction: dict = field(default_factory=dict)  # output -> {"linf", "mse": (widths,)}
    product: dict = field(default_factory=dict)  # "steps", "dense_width", model -> {"linf", "mse": (steps, seeds)}

    def metrics(self) -> dict:
        def plain(v):
            if isinstance(v, dict):
                return {str(k): plain(x) for k, x in v.items()}
            return np.asarray(v).tolist()

        slopes = {t: {metric: exp2_slopes(self, t, metric) for metric in ("mse", "linf")} for t in self.exp2}
        return plain({"construction_linf": self.construction_linf, "exp1": self.exp1, "exp1_arms": self.exp1_arms,
                      "exp2": self.exp2,
                      "exp2_params": self.exp2_params, "exp2_construction": self.exp2_construction,
                      "jump": self.jump, "spiral": self.spiral, "cube": self.cube, "cube_params": self.cube_params,
                      "cube_construction": self.cube_construction, "product": self.product,
                      "slopes": {"construction": construction_slopes(self), "exp2": slopes,
                                 "cube": {o: cube_slopes(self, o) for o in self.cube}}})


def result_from_metrics(cfg: Config, metrics: dict) -> Result:
    """The :class:`Result` whose :meth:`Result.metrics` gave ``metrics`` (a record's), lists back as arrays; the
    derived ``"slopes"`` are recomputed from the errors, not read."""
    def arrays(v):
        if isinstance(v, dict):
            return {k: arrays(x) for k, x in v.items()}
        return np.asarray(v) if isinstance(v, list) else v

    fields = ("exp1", "exp1_arms", "exp2", "exp2_params", "exp2_construction", "jump", "spiral", "cube",
              "cube_params", "cube_construction", "product")
    missing = [k for k in ("construction_linf", *fields) if k not in metrics]
    if missing:
        raise ValueError(f"metrics lack {missing}: a record made before them cannot be read back, re-make it")
    return Result(config=cfg, construction_linf=np.asarray(metrics["construction_linf"]),
                  **{k: arrays(metrics[k]) for k in fields})


def recorded_result(cfg: Config, report) -> Result | None:
    """The :class:`Result` of a recorded run (a :class:`moetheory.reproduce.Report`, or ``None``) when its config is
    ``cfg``'s, else ``None`` (no record, or one of another preset: the caller runs ``cfg`` itself)."""
    if report is None or report.config != runtime.config_dict(cfg):
        return None
    return result_from_metrics(cfg, report.metrics)


def _errors(res, n_groups: int) -> dict:
    return {"linf": res.linf.reshape(n_groups, -1), "mse": res.mse.reshape(n_groups, -1)}


def _fit(model, X, y, iterations, cfg, dev, gen):
    train_regression(model.to(dev), X, y, iterations=iterations, lr=cfg.lr, batch_size=cfg.batch_size,
                     generator=gen)
    return model


def run_construction(cfg: Config) -> np.ndarray:
    """L-infinity errors ``(E, m)`` of Corollary 4.9's MoE on a grid of the circle in R^D (CPU, untrained)."""
    X, y, _ = manifolds.sample_circle(cfg.test_points, cfg.construction_dim, embedding_seed=cfg.seed, grid=True)
    emb = manifolds.random_embedding(2, cfg.construction_dim, cfg.seed)
    out = np.zeros((len(cfg.construction_experts), len(cfg.construction_widths)))
    with torch.no_grad():
        for i, e in enumerate(cfg.construction_experts):
            for j, w in enumerate(cfg.construction_widths):
                layer = construct_circle_moe(e, w, emb, manifolds.circle_target)
                out[i, j] = float((layer(circle_state(X))[0, :, 0] - y).abs().max())
    return out


def run_exp1(cfg: Config, dev, gen) -> dict:
    """Experiment I: 1-4-MoE vs dense nets matched on active / total parameters, for each ambient D.

    ``cfg.exp1_embedding="zero-pad"`` is the paper's circle: the padded coordinates are exactly zero, so their
    first-layer weights get no gradient and never move, and every model (the dense ones too) sees the same problem
    for every D up to its initialisation.
    """
    out = {"moe": [], "dense_active": [], "dense_total": [], "width_active": [], "width_total": []}
    for D in cfg.exp1_dims:
        embed = {"embedding_seed": cfg.seed, "embedding": cfg.exp1_embedding}
        X, y, _ = manifolds.sample_circle(cfg.n_train, D, seed=cfg.seed + 1, **embed)
        Xt, yt, _ = manifolds.sample_circle(cfg.test_points, D, grid=True, **embed)
        X, y, Xt, yt = (t.to(dev) for t in (X, y, Xt, yt))
        moe = _fit(StackedMoE(D, cfg.exp1_experts, [cfg.exp1_width] * cfg.n_seeds), X, y, cfg.exp1_iterations,
                   cfg, dev, gen)
        count = moe_parameters(D + 2, cfg.exp1_experts, cfg.exp1_width)
        w_act, w_tot = (max(1, round((count[key] - 1) / (D + 2))) for key in ("active", "total"))
        dense = _fit(DenseNet(D, [w_act] * cfg.n_seeds + [w_tot] * cfg.n_seeds), X, y, cfg.exp1_iterations, cfg,
                     dev, gen)
        r_moe, r_dense = evaluate(moe, Xt, yt), _errors(evaluate(dense, Xt, yt), 2)
        out["moe"].append(r_moe)
        out["dense_active"].append((r_dense["linf"][0], r_dense["mse"][0]))
        out["dense_total"].append((r_dense["linf"][1], r_dense["mse"][1]))
        out["width_active"].append(w_act)
        out["width_total"].append(w_tot)
    res = {"dims": list(cfg.exp1_dims), "width_active": out["width_active"], "width_total": out["width_total"],
           "moe": {"linf": np.stack([r.linf for r in out["moe"]]), "mse": np.stack([r.mse for r in out["moe"]])}}
    for key in ("dense_active", "dense_total"):
        res[key] = {"linf": np.stack([a for a, _ in out[key]]), "mse": np.stack([b for _, b in out[key]])}
    return res


def run_jump(cfg: Config, dev, gen) -> dict:
    """A 2-expert MoE against a dense ReLU net with the MoE's total parameter count, on sin(3x) + J 1[x >= 0]."""
    X, y = manifolds.sample_jump(cfg.n_train, cfg.jump, seed=cfg.seed + 1)
    Xt, yt = manifolds.sample_jump(cfg.test_points, cfg.jump, grid=True)
    X, y, Xt, yt = (t.to(dev) for t in (X, y, Xt, yt))
    moe = _fit(StackedMoE(1, 2, [cfg.jump_width] * cfg.n_seeds), X, y, cfg.jump_iterations, cfg, dev, gen)
    width = round((moe_parameters(3, 2, cfg.jump_width)["total"] - 1) / 3)  # dense 1 -> w -> 1: 3w + 1
    dense = _fit(DenseNet(1, [width] * cfg.n_seeds), X, y, cfg.jump_iterations, cfg, dev, gen)
    out = {"moe": _errors(evaluate(moe, Xt, yt), 1), "dense": _errors(evaluate(dense, Xt, yt), 1),
           "dense_width": width}
    target = lambda x: manifolds.jump_target(x, cfg.jump)  # noqa: E731
    out["dense"]["sup"] = pieces.sup_error(dense.cpu(), target, -1, 1, jumps=(0.0,))
    out["moe"]["sup"] = pieces.sup_error(moe.cpu(), target, -1, 1, jumps=(0.0,))
    out["moe"]["offset"], out["moe"]["outside"] = _boundary(moe, target)
    return out


def _boundary(moe, target, margin: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Per slot: the distance from the jump at 0 to the gate's switch nearest to it, and the supremum error outside
    the band between the two (each end widened by ``margin``): where routing is right. A gate that never switches
    on [-1, 1] has offset inf and its supremum error over all of [-1, 1]."""
    offset, outside = [], []
    for s, switch in enumerate(pieces.routing_switches(moe, -1, 1)):
        s0 = float(switch[np.argmin(np.abs(switch))]) if len(switch) else np.inf
        spans = ((-1.0, min(0.0, s0) - margin), (max(0.0, s0) + margin, 1.0)) if len(switch) else ((-1.0, 1.0),)
        offset.append(abs(s0))
        outside.append(max(pieces.sup_error(moe, target, a, b, jumps=(0.0,))[s] for a, b in spans if b > a))
    return np.array(offset), np.array(outside)


def run_spiral(cfg: Config, dev, gen) -> dict:
    """Spiral arcs: 1 layer with a linear gate, 1 layer with an MLP gate, 2 layers with linear gates."""
    pieces = cfg.spiral_pieces
    X, y, _ = manifolds.sample_spiral(cfg.n_train, pieces, seed=cfg.seed + 1, target_seed=cfg.seed + 7)
    Xt, yt, _ = manifolds.sample_spiral(cfg.test_points, pieces, target_seed=cfg.seed + 7, grid=True)
    X, y, Xt, yt = (t.to(dev) for t in (X, y, Xt, yt))
    slots, e = [cfg.spiral_width] * cfg.n_seeds, pieces
    models = {"linear_gate": StackedMoE(2, e, slots), "mlp_gate": StackedMoE(2, e, slots, gate="mlp"),
              "two_layers": StackedMoE(2, e, slots, n_layers=2)}
    return {k: _errors(evaluate(_fit(m, X, y, cfg.spiral_iterations, cfg, dev, gen), Xt, yt), 1)
            for k, m in models.items()}


def _seed_step(cfg: Config, step: str) -> torch.Generator:
    """Seed python, numpy and torch for ``step`` of :data:`STEPS` (see the seeding note there)."""
    return runtime.seed_everything(cfg.seed * len(STEPS) + STEPS.index(step))


def run_exp1_embedding(cfg: Config, embedding: str, device="auto") -> dict:
    """Experiment I with the circle embedded by ``embedding`` ("random" or "zero-pad"), seeded as :func:`run` seeds
    it: the same dims, initialisations and minibatches as the record's arm (the chapter sets the two side by side)."""
    check_choice("embedding", embedding, manifolds.EMBEDDINGS)
    return run_exp1(replace(cfg, exp1_embedding=embedding), runtime.resolve_device(device), _seed_step(cfg, "exp1"))


def run(config: Config, device="auto", progress: bool = False) -> Result:
    """All experiments (the cube and the product at convergence when configured); seeds are batched in a slot
    axis, every model type trained once per setting."""
    dev = runtime.resolve_device(device)
    result = Result(config=config, construction_linf=np.zeros(0))
    for step in runtime.progress(STEPS, desc="wang2025", enabled=progress):
        gen = _seed_step(config, step)
        if step == "construction":
            result.construction_linf = run_construction(config)
        elif step == "exp1":
            result.exp1 = run_exp1(config, dev, gen)
            result.exp1_arms = {e: run_exp1_embedding(config, e, dev)  # same seeds: the chapter's comparison
                                for e in manifolds.EMBEDDINGS if e != config.exp1_embedding}
        elif step == "exp2":
            result.exp2, result.exp2_params = run_exp2(config, dev, gen)
            result.exp2_construction = run_construction2(config)
        elif step == "jump":
            result.jump = run_jump(config, dev, gen)
        elif step == "spiral":
            result.spiral = run_spiral(config, dev, gen)
        elif step == "cube" and config.cube_widths:
            result.cube, result.cube_params = run_cube(config, dev, gen)
            result.cube_construction = run_cube_construction(config)
        elif step == "product" and config.product_iterations:
            result.product = run_product(config, dev, gen)
    return result


PAPER = Paper(name="wang2025", title="Wang & E (2025): expressive power of MoE on manifolds and with depth",
              config=config, run=run, claims=claims, provenance=provenance_of)
