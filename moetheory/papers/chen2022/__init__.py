"""Chen, Deng, Wu, Gu, Li (NeurIPS 2022): Towards Understanding the Mixture-of-Experts Layer in Deep Learning
(arXiv version: Towards Understanding Mixture of Experts in Deep Learning).

The chen2022 chapter. Table 1 (test accuracy and dispatch entropy of single CNNs and top-1 MoEs on the cluster
data of Definition 3.1), the router learning the cluster centers, and Theorem 4.1's single-expert bound tested on
the "verify" data. Models and training follow the official code (uclaml/MoE); see :mod:`.patch_moe` (the models
and their training), :mod:`.patch_cnn` (the patch CNN's kernels) and :mod:`.data` (Definition 3.1's data).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from moetheory import ledger, runtime
from moetheory.activations import ACTIVATIONS
from moetheory.checks import MAX_SEED, check_choice, check_float, check_int
from moetheory.checks import SCALES as COMMON_SCALES
from moetheory.ledger import Claim
from moetheory.papers import Paper
from moetheory.papers.chen2022 import bound as bound_rule
from moetheory.papers.chen2022 import extras, fmnist, patch_moe
from moetheory.papers.chen2022.data import CHEN_SETTINGS, make_chen_clusters
from moetheory.papers.chen2022.table1 import (  # noqa: F401  (re-exported: the chapter and tests read them here)
    BOUND_LIMIT,
    OFFICIAL_CODE,
    OFFICIAL_SINGLE,
    OFFICIAL_TABLE1,
    PROVENANCE,
    SINGLE_TOLERANCE,
    TABLE1,
    TABLE1_SINGLE,
    bound_claims,
    moe_claims,
    provenance_of,
    single_claims,
)

MOE_MODELS = ("cubic", "linear")  # expert activation: the "nonlinear" and "linear" MoE rows of Table 1
BOUND_SETS = ("verify", "S3", "S4")  # the data sets with D_alpha = D_gamma (Theorem 4.1's hypothesis)


def claim_setting(settings) -> str:
    """The data setting the chapter's figures speak of: S1 when it was run, else the first setting."""
    return "S1" if "S1" in settings else settings[0]


@dataclass(frozen=True)
class Config:
    settings: tuple[str, ...] = ("S1", "S2", "S3", "S4")  # data settings of the MoE rows (Table 1 columns)
    # single models train on these settings (the summaries of Table 1: S1 only; the official notebooks: all four)
    single_settings: tuple[str, ...] = ("S1",)
    n_seeds: int = 10  # independent runs per configuration (Table 1: 10), trained together
    seed: int = 0  # base seed of the model initialisation and router noise (data use the official seeds)
    # False skips Table 1's MoE rows and single CNNs (their claims: not run): the paper-extras preset, which
    # runs what the paper preset leaves out
    table1: bool = True
    n_train: int = 16000  # official training-set size (full batch)
    n_test: int = 16000  # official test-set size
    n_experts: int = 8  # M
    expert_filters: int = 16  # filters per expert, half per class (8 + 8)
    moe_epochs: int = 501  # official MoE epochs (early stopping usually ends the cubic MoE sooner)
    expert_lr: float = 1e-3  # normalized GD step of the experts
    router_lr: float = 0.1  # SGD step of the router
    expert_init_scale: float = 1e-3  # experts start at nn.Conv1d's default init x 0.001
    stop_margin: float = 0.02  # stop when the loss exceeds its minimum by this much
    stop_loss: float = 0.314  # ... or when it is at most this (just above log(1 + e^-1) = 0.3133)
    single_filters: int = 80  # single CNN: 40 filters per class
    single_epochs: int = 801  # official Adam epochs of the single models
    single_patience_after: int = 500  # single models may stop early only after this epoch (official)
    single_lr_linear: float = 3e-3  # official Adam step, linear single model
    single_lr_nonlinear: float = 1e-2  # official Adam step, cubic single model (also used for ReLU/GELU/tanh)
    weight_decay: float = 5e-4  # Adam's L2 weight decay (official)
    # Theorem 4.1 as the official synthetic_demo_verify*.ipynb test it: single CNNs of 128 filters, Adam at 1e-3
    # (linear) or single_lr_nonlinear, 801 epochs, six activations; on every data set with D_alpha = D_gamma
    bound_settings: tuple[str, ...] = BOUND_SETS  # () skips the Theorem 4.1 runs (their claims: not run)
    bound_activations: tuple[str, ...] = ("linear", "cubic", "relu", "celu", "gelu", "tanh")
    bound_filters: int = 128  # official verify notebooks (Table 1's singles: 80)
    bound_lr_linear: float = 1e-3  # official verify notebooks' Adam step of the linear model
    bound_seeds: int = 1  # runs per activation for the Theorem 4.1 test
    bound_epochs: int = 801  # Adam epochs of those runs
    ablation: bool = True  # also train the cubic MoE with the paper's softmax gate on settings[0]
    # ablations on S1 (chen2022.extras): the official load-balancing loss and a router without noise, both
    # expert kinds, trained as Table 1's MoEs; () skips them (their claims: not run)
    extra_ablations: tuple[str, ...] = extras.ABLATIONS
    balance_weight: float = 1e-4  # official synthetic_demo notebooks (the entropy notebooks: 1e-3)
    # the official entropy protocol (fixed noise, per-tensor normalised GD, all moe_epochs) on these settings
    entropy_settings: tuple[str, ...] = ("S1", "S2")
    # single CNNs on these settings at every width (the official notebooks: 80/128/512 filters, one run each)
    sweep_settings: tuple[str, ...] = ("S1", "S2", "S3", "S4")
    sweep_filters: tuple[int, ...] = (80, 128, 512)
    # runs per (setting, width, activation): one, as the official notebooks (their cells have no spread); the
    # cells at single_filters on single_settings reuse Table 1's n_seeds runs
    sweep_seeds: int = 1
    # Fashion-MNIST-Rotate, an analogue of the paper's CIFAR-10-Rotate (:mod:`.fmnist`; needs the data)
    fmnist_per_class: int = 6000  # training images per class (6000: all); 0 skips the analogue (not run)
    fmnist_test_per_class: int = 1000  # test images per class (1000: all); each also appears rotated
    fmnist_epochs: int = 4  # epochs of minibatch training (official: 10 for ResNet18, 30 for MobileNetV2)
    fmnist_seeds: int = 3  # runs of the MoE and the single CNN (official: 5), seeds seed, seed + 1, ...
    fmnist_filters: int = 8  # first-conv filters of each expert (second conv: twice as many)

    def __post_init__(self):
        for name in ("settings", "single_settings"):
            for s in getattr(self, name):
                check_choice(name, s, tuple(k for k in CHEN_SETTINGS if k != "verify"))
        for s in self.bound_settings:
            check_choice("bound_settings", s, BOUND_SETS)
        if not self.settings:
            raise ValueError("settings must name at least one of 'S1', 'S2', 'S3', 'S4'; got ()")
        check_int("seed", self.seed, 0, MAX_SEED)
        for name, low in (("n_seeds", 1), ("n_train", 8), ("n_test", 8), ("n_experts", 1),
                          ("expert_filters", 2), ("moe_epochs", 1), ("single_filters", 2), ("single_epochs", 1),
                          ("single_patience_after", 0), ("bound_seeds", 1), ("bound_epochs", 1),
                          ("bound_filters", 2)):
            check_int(name, getattr(self, name), low)
        for name in ("expert_filters", "single_filters", "bound_filters"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even (half the filters per class); got {getattr(self, name)}")
        for name in ("expert_lr", "router_lr", "expert_init_scale", "single_lr_linear", "single_lr_nonlinear",
                     "bound_lr_linear"):
            check_float(name, getattr(self, name), 0.0, low_open=True)
        for name in ("stop_margin", "stop_loss", "weight_decay"):
            check_float(name, getattr(self, name), 0.0)
        if not self.bound_activations:  # the bound claim is the best over them
            raise ValueError("bound_activations must name at least one activation; got ()")
        for act in self.bound_activations:
            check_choice("bound_activations", act, ACTIVATIONS)
        extras.check_config(self)
        fmnist.check_config(self)


SCALES = (*COMMON_SCALES, "paper-extras")
"""The scales of this paper: the common three and ``paper-extras``. At the paper's sizes everything takes about
93 CPU-minutes on one thread, so ``paper`` runs Table 1 (the MoE rows on S1-S4 and the single CNNs on S1, about
20 CPU-minutes) and ``paper-extras`` everything else; the ledger shows the two records as one paper-scale column."""
PRESETS = {
    # seconds: unit tests
    "tiny": Config(settings=("S1",), n_seeds=2, n_train=512, n_test=512, moe_epochs=20, single_epochs=20,
                   single_patience_after=10, bound_settings=("verify", "S3"), bound_activations=("linear", "celu"),
                   bound_filters=8, bound_epochs=10, fmnist_per_class=20, fmnist_test_per_class=20,
                   fmnist_epochs=3, fmnist_seeds=2),
    # `moetheory reproduce --scale quick`: S1, 3 seeds, official epochs, as float64 on the CPU
    # (:func:`moetheory.runtime.compute_dtype`, about 2.5x slower than float32 here), except the Theorem 4.1 runs:
    # the official 128 filters and learning rates on verify, S3 and S4, but 100 epochs (not 801) and two
    # activations (linear, CELU: the official best); all six at paper scale
    # (Fashion-MNIST-Rotate: 200 + 200 images per class, 8 epochs, 3 seeds: about 40 CPU-s, one thread, float64)
    "quick": Config(settings=("S1",), n_seeds=3, bound_epochs=100, bound_activations=("linear", "celu"),
                    fmnist_per_class=200, fmnist_test_per_class=200, fmnist_epochs=8),
    # Table 1: S1-S4, 10 seeds, official epochs; nothing else (paper-extras)
    "paper": Config(ablation=False, extra_ablations=(), bound_settings=(), fmnist_per_class=0),
    # the rest at the paper's sizes: the softmax-gate and S1 ablations, Theorem 4.1 by the official verify protocol
    # on verify, S3 and S4 with its positive control, and Fashion-MNIST-Rotate on the full sets, 4 epochs, 3 seeds
    # (estimated 9-10 CPU-min from the measured 2.0e-4 (MoE) + 1.5e-4 (single) CPU-s per image-epoch, one thread)
    "paper-extras": Config(table1=False),
}
# chen2022.extras per scale: the ablations run at every scale; the official entropy protocol (every epoch of
# both MoEs on S1 and S2, no early stopping) and the single CNNs' width sweep (S1-S4 x 80/128/512 filters) in
# paper-extras, and on S1 in the tiny preset's few epochs
EXTRAS_AT = {"tiny": {"entropy_settings": ("S1",), "sweep_settings": ("S1",), "sweep_filters": (4, 8)},
             "quick": {"entropy_settings": (), "sweep_settings": ()},
             "paper": {"entropy_settings": (), "sweep_settings": ()}, "paper-extras": {}}
PRESETS = {scale: replace(cfg, **EXTRAS_AT[scale]) for scale, cfg in PRESETS.items()}


def config(scale: str) -> Config:
    """The ``tiny`` / ``quick`` / ``paper`` / ``paper-extras`` preset (:data:`PRESETS`)."""
    return PRESETS[check_choice("scale", scale, SCALES)]


@dataclass
class Result:
    config: Config
    moe: dict = field(default_factory=dict)  # (setting, activation) -> patch_moe.MoERecord
    single: dict = field(default_factory=dict)  # (setting, activation) -> patch_moe.SingleRecord
    bound: dict = field(default_factory=dict)  # (data set, activation) -> SingleRecord, D_alpha = D_gamma data
    bound_rule: dict = field(default_factory=dict)  # data set -> test accuracy % of the non-additive rule
    ablation: patch_moe.MoERecord | None = None  # cubic MoE with the softmax gate, settings[0]
    extras: dict = field(default_factory=dict)  # (ablation, activation) -> MoERecord on S1 (chen2022.extras)
    entropy_protocol: dict = field(default_factory=dict)  # (setting, activation) -> MoERecord (chen2022.extras)
    sweep: dict = field(default_factory=dict)  # (setting, filters, activation) -> SingleRecord (chen2022.extras)
    fmnist: fmnist.FmnistResult | None = None  # Fashion-MNIST-Rotate analogue; None: skipped or no data

    def table(self) -> list[dict]:
        """Table 1 rows: one per (model, setting), with mean and std over seeds."""
        rows = []
        for (setting, act), rec in self.single.items():
            rows.append(_row(f"single {_name(act)}", setting, rec.test_accuracy, None, rec.epochs))
        for (setting, act), rec in self.moe.items():
            rows.append(_row(f"MoE {_name(act)}", setting, rec.test_accuracy, rec.entropy, rec.epochs))
        if self.ablation is not None:
            rec = self.ablation
            rows.append(_row("MoE nonlinear, softmax gate", self.config.settings[0], rec.test_accuracy,
                             rec.entropy, rec.epochs))
        return rows

    def bound_best(self) -> tuple[tuple[str, str], float]:
        """The (data set, activation) whose single model did best under Theorem 4.1's hypothesis, and its mean
        test accuracy."""
        means = {key: float(rec.test_accuracy.double().mean()) for key, rec in self.bound.items()}
        best = max(means, key=means.get)
        return best, means[best]

    def per_seed(self) -> dict:
        """``"<setting>-<activation>"`` -> per-seed test accuracy (%), final dispatch entropy and epochs trained
        of the MoE runs."""
        return {f"{s}-{act}": {"accuracy": [round(v, 2) for v in rec.test_accuracy.tolist()],
                               "entropy": [round(v, 4) for v in rec.entropy.tolist()],
                               "epochs": rec.epochs.tolist()}
                for (s, act), rec in self.moe.items()}

    def second_reference(self) -> list[dict]:
        """The S2 MoE cells beside the official S2 rerun (whose printout is not the summaries' S2 column)."""
        rows = []
        for act in MOE_MODELS:
            rec = self.moe.get(("S2", act))
            if rec is None:
                continue
            for i, (kind, values) in enumerate((("accuracy", rec.test_accuracy), ("entropy", rec.entropy))):
                ref_m, ref_s = OFFICIAL_TABLE1[("S2", act)][i]
                ours = float(values.double().mean())
                rows.append({"model": f"MoE {_name(act)}", "kind": kind, "ours": round(ours, 4),
                             "official_rerun": [ref_m, ref_s], "within_2_std": abs(ours - ref_m) <= 2 * ref_s})
        return rows

    def metrics(self) -> dict:
        out = {"table": self.table(), "per_seed": self.per_seed(), "second_reference": self.second_reference(),
               "bound": {f"{s}-{act}": _stats(rec.test_accuracy) for (s, act), rec in self.bound.items()},
               "bound_rule": {s: round(v, 2) for s, v in self.bound_rule.items()},
               "ablations": extras.table(self.extras, _row),
               "entropy_protocol": extras.entropy_curves(self.entropy_protocol),
               "single_sweep": extras.sweep_table(self.sweep)}
        for (setting, act), rec in self.moe.items():
            key = f"{setting}-{act}"
            out[f"entropy_curve_{key}"] = [round(float(v), 4) for v in rec.entropy_history.mean(1)]
            out[f"routing_matrix_{key}"] = rec.routing_matrix[0].tolist()
            out[f"router_center_alignment_{key}"] = round(float(router_center_alignment(rec)[-1].mean()), 4)
        if self.fmnist is not None:
            out["fmnist_rotate"] = self.fmnist.metrics()
        return out


def _name(act: str) -> str:
    return "linear" if act == "linear" else "nonlinear"


def _stats(values: torch.Tensor) -> dict:
    v = values.double()
    # 4 decimals: the chapter prints 1-2 of them, and a 3-decimal mean such as 0.375 would round a second time;
    # std with ddof 0 (np.std), the official notebooks' convention
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(correction=0)), 4)}


def _row(model, setting, acc, ent, epochs) -> dict:
    return {"model": model, "setting": setting, "accuracy": _stats(acc),
            "entropy": _stats(ent) if ent is not None else None, "epochs": round(float(epochs.double().mean()), 1)}


def router_center_alignment(rec: patch_moe.MoERecord) -> torch.Tensor:
    """``(T, S)``: for each expert the largest cosine between theta_m and a cluster center c_k, averaged over
    the experts that receive data at the end (0 at the zero initialisation)."""
    best = rec.router_center_cos.amax(-1)  # (T, S, E)
    used = (rec.routing_matrix.sum(1) > 0).to(best.dtype)  # (S, E)
    return (best * used).sum(-1) / used.sum(-1).clamp_min(1)


def run(config: Config, device="auto", progress: bool = False) -> Result:
    """Train every configuration of ``config`` (all seeds of one configuration at once)."""
    dev = runtime.resolve_device(device)
    runtime.seed_everything(config.seed)
    result = Result(config)

    def bar(desc):
        return lambda it: runtime.progress(it, desc=desc, enabled=progress)

    for i, setting in enumerate(config.settings):
        data = make_chen_clusters(setting, config.n_train, config.n_test).to(dev)
        table1 = ["raw"] if config.table1 else []
        gates = table1 + (["softmax"] if (i == 0 and config.ablation) else [])
        for act in MOE_MODELS:
            for gate in gates if act == "cubic" else table1:
                model = patch_moe.make_moe(config.n_seeds, data.train_x.shape[-1], n_experts=config.n_experts,
                                           n_filters=config.expert_filters, activation=act, combine=gate,
                                           init_scale=config.expert_init_scale, seed=config.seed, device=dev)
                rec = patch_moe.train_moe(model, data, epochs=config.moe_epochs, expert_lr=config.expert_lr,
                                          router_lr=config.router_lr, stop_margin=config.stop_margin,
                                          stop_loss=config.stop_loss, progress=bar(f"{setting} MoE {act} {gate}"))
                if gate == "raw":
                    result.moe[(setting, act)] = rec
                else:
                    result.ablation = rec
        if config.table1 and setting in config.single_settings:
            for act in ("cubic", "linear"):
                result.single[(setting, act)] = _train_single(config, data, act, config.n_seeds,
                                                              config.single_epochs, bar(f"{setting} single {act}"))
    def data_of(setting):
        return make_chen_clusters(setting, config.n_train, config.n_test).to(dev)

    result.extras = extras.run(config, data_of, dev, bar)
    result.entropy_protocol = extras.run_entropy(config, data_of, dev, bar)
    result.sweep = extras.run_sweep(  # reuses Table 1's single runs (their own seed count) at their width
        config, data_of, lambda data, act, n, width, progress: _train_single(
            config, data, act, n, config.single_epochs, progress, width), result.single, bar)
    for setting in config.bound_settings:
        data = make_chen_clusters(setting, config.n_train, config.n_test).to(dev)
        result.bound_rule[setting] = bound_rule.rule_accuracy(data)
        for act in config.bound_activations:
            lr = config.bound_lr_linear if act == "linear" else config.single_lr_nonlinear
            result.bound[(setting, act)] = _train_single(config, data, act, config.bound_seeds, config.bound_epochs,
                                                         bar(f"{setting} single {act}"), config.bound_filters, lr)
    result.fmnist = fmnist.run_or_none(config, progress)
    return result


def _train_single(config: Config, data, act: str, n_seeds: int, epochs: int, progress, n_filters=None, lr=None):
    if lr is None:
        lr = config.single_lr_linear if act == "linear" else config.single_lr_nonlinear
    return patch_moe.train_single(data, n_seeds=n_seeds, n_filters=n_filters or config.single_filters,
                                  activation=act, lr=lr,
                                  weight_decay=config.weight_decay, epochs=epochs,
                                  patience_after=config.single_patience_after, stop_margin=config.stop_margin,
                                  seed=config.seed, progress=progress)


def claims(result: Result) -> list[Claim]:
    """The chapter's claims: the 16 MoE cells of Table 1, the two single CNNs of S1, Theorem 4.1 and its positive
    control; those whose runs the config left out are `not run`."""
    cfg = result.config
    return [*moe_claims(result, cfg.n_seeds), *single_claims(result, cfg.single_filters),
            *bound_claims(result, cfg.bound_activations, cfg.bound_filters),
            *extras.claims(result.extras, cfg), *fmnist.claims(result.fmnist)]


def provenance_all(claim_id: str, config: dict | None = None) -> dict:
    """``provenance`` and ``source`` of every chen2022 claim: Table 1's and Theorem 4.1's (:func:`provenance_of`),
    the ablations' (:data:`.extras.PROVENANCE`) and the Fashion-MNIST-Rotate analogue's (:data:`.fmnist.PROVENANCE`)."""
    for table in (extras.PROVENANCE, fmnist.PROVENANCE):
        if claim_id in table:
            return ledger.provenance_entry(table, claim_id)
    return provenance_of(claim_id, config)


PAPER = Paper(name="chen2022",
              title="Chen et al. 2022: Towards Understanding the Mixture-of-Experts Layer in Deep Learning",
              config=config, run=run, claims=claims, provenance=provenance_all, scales=SCALES)
