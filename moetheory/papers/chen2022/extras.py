"""Chen et al. (2022)'s ablations: the official load-balancing loss and a router without noise.

Used by the chen2022 chapter through :mod:`moetheory.papers.chen2022`. Both train the MoEs of Table 1 (linear
and cubic experts) on S1 exactly as :func:`.patch_moe.train_moe` does, with one change each, read from the
official code (uclaml/MoE at 0b0853f, synthetic_demo_s<k>.ipynb):

- ``balance``: the loss gains ``w * E^2 * mean_m(mean_n(h~_nm) * f_m)``, with ``h~`` the noisy router logits
  (not softmax probabilities) and ``f_m`` the fraction of examples routed to expert m (no gradient through it);
  ``w = 1e-4`` in the demo notebooks (1e-3 in the entropy notebooks); no committed official run uses it.
- ``no_noise``: the official router's ``noise=False`` branch: instead of fresh U[0, 1) noise at every step, a
  tie-breaking N(0, 1e-5^2) draw fixed once per example (the zero-initialised router would otherwise tie).

The official entropy protocol (entropy_change_s1/s2.ipynb, the paper's entropy-over-training figure) differs
from Table 1's: the router noise is drawn once per run and kept (``fixed``), each expert's weight and bias
gradients are normalised separately, and every one of the 501 epochs runs (no early stopping); 10 runs.
:func:`run_entropy` trains that protocol so that its curves compare like with like with the official means.
"""

from __future__ import annotations

import torch

from moetheory import ledger, routing
from moetheory.checks import check_choice, check_float, check_int
from moetheory.ledger import NOT_RUN, Claim
from moetheory.papers.chen2022 import patch_moe
from moetheory.papers.chen2022.table1 import OFFICIAL_CODE, SLUG_ACT, mean

ABLATIONS = ("balance", "no_noise")
NOISE_MODES = ("fresh", "fixed", "none")  # U[0,1) every step; U[0,1) drawn once; fixed N(0, 1e-5^2) tie-break
TIE_BREAK_STD = 1e-5  # the official router's tie-breaking noise when noise=False
THIRD_PARTY_BALANCE = {  # MoE with load balancing, (mean, std) accuracy % and dispatch entropy (third party)
    "linear": ((93.81, 1.10), (1.272, 0.037)),
    "cubic": ((99.39, 0.33), (0.083, 0.095)),
}
_SOURCE = ("third-party summaries of the paper's load-balancing ablation (paper text not read; setting taken "
           "as S1, Table 1's first column); the weight and the form of the loss from the official "
           f"synthetic_demo_s1.ipynb ({OFFICIAL_CODE}), where no committed run uses it")
OFFICIAL_ENTROPY_EPOCHS = (0, 50, 100, 200, 500)
OFFICIAL_ENTROPY = {  # (setting, activation) -> mean dispatch entropy of 10 official runs at those epochs
    ("S1", "cubic"): (1.386, 0.705, 0.234, 0.120, 0.135),
    ("S1", "linear"): (1.386, 1.188, 1.219, 1.254, 1.285),
    ("S2", "cubic"): (1.385, 0.720, 0.278, 0.220, 0.257),
    ("S2", "linear"): (1.385, 1.123, 1.135, 1.154, 1.191),
}
OFFICIAL_ENTROPY_SOURCE = (f"official code: entropy_change_records/*.pt of {OFFICIAL_CODE} (entropy_change_s1/s2"
                           ".ipynb, plotted by plot.ipynb); fixed noise, per-tensor normalised GD, no early stop")
OFFICIAL_SINGLES = {  # (setting, filters) -> official printout, one run each: test accuracy % (linear, cubic)
    ("S1", 80): (68.31, 79.57), ("S2", 80): (68.22, 77.38), ("S3", 80): (74.30, 73.72), ("S4", 80): (74.28, 70.26),
    ("S1", 128): (70.94, 78.54), ("S2", 128): (69.56, 74.04), ("S3", 128): (74.81, 72.71),
    ("S4", 128): (74.63, 68.60),
    ("S1", 512): (68.92, 72.64), ("S2", 512): (63.04, 52.09), ("S3", 512): (74.54, 67.78),
    ("S4", 512): (72.98, 61.65),
}
OFFICIAL_SINGLES_SOURCE = f"official code: printouts of synthetic_demo_s1..s4.ipynb ({OFFICIAL_CODE}), one run each"
PROVENANCE = {  # claim id -> (provenance, source); read by provenance_of beside table1.PROVENANCE
    f"chen2022/load-balancing-{slug}-{kind}": ("third party", _SOURCE)
    for slug in SLUG_ACT for kind in ("accuracy", "entropy")
}


def check_config(config) -> None:
    """The ablation fields of a chen2022 ``Config``."""
    for name in config.extra_ablations:
        check_choice("extra_ablations", name, ABLATIONS)
    check_float("balance_weight", config.balance_weight, 0.0)
    for setting in config.entropy_settings:
        check_choice("entropy_settings", setting, ("S1", "S2"))  # the official entropy notebooks
    for setting in config.sweep_settings:
        check_choice("sweep_settings", setting, ("S1", "S2", "S3", "S4"))
    for width in config.sweep_filters:
        check_int("sweep_filters", width, 2)
        if width % 2:
            raise ValueError(f"sweep_filters must be even (half the filters per class); got {width}")
    check_int("sweep_seeds", config.sweep_seeds, 1)


class OfficialRouter(routing.Router):
    """The official top-1 router ``h(x) + noise`` with the raw noisy logit as gate, its noise drawn fresh at every
    call (``fresh``), once per input size and then kept (``fixed``), or a fixed tie-break (``none``).

    ``last_noisy`` holds the noisy logits ``(S, n, E)`` of the last call (the load-balancing loss reads them).
    """

    def __init__(self, d_in: int, n_experts: int, *, n_seeds: int, mode: str, seed: int):
        super().__init__(d_in, n_experts, 1, n_seeds=n_seeds, noise="uniform", combine="raw",
                         noise_at_eval=True, init_std=0.0)
        self.mode = check_choice("mode", mode, NOISE_MODES)
        self.kept: dict[int, torch.Tensor] = {}  # rows -> the fixed noise (the official code: one per data set)
        self.draws = torch.Generator().manual_seed(seed)
        self.last_noisy: torch.Tensor | None = None

    def noise_for(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.mode == "fresh":
            return routing._noise_like(clean, "uniform", generator)
        n = clean.shape[1]
        if n not in self.kept:
            shape = clean.shape
            draw = (torch.rand(shape, generator=self.draws) if self.mode == "fixed"
                    else torch.randn(shape, generator=self.draws) * TIE_BREAK_STD)
            self.kept[n] = draw.to(clean.device, clean.dtype)
        return self.kept[n]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> routing.Routing:
        clean = self.logits(x)
        noisy = clean + self.noise_for(clean, generator)
        self.last_noisy = noisy
        value, index = noisy.max(-1, keepdim=True)
        return routing.Routing(index=index, weight=value, logits=clean)


def official_balance_loss(noisy: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per seed ``(S,)``: ``E^2 * mean_m(mean_n(noisy_nm) * f_m)`` for noisy logits ``(S, n, E)`` and top-1
    choices ``index`` ``(S, n, 1)``; ``f_m`` (the fraction routed to m) carries no gradient, as officially."""
    n_experts = noisy.shape[-1]
    counts = torch.zeros_like(noisy).scatter_add(-1, index, torch.ones_like(index, dtype=noisy.dtype))
    fraction = counts.mean(1).detach()  # (S, E)
    return (noisy.mean(1) * fraction).mean(-1) * n_experts ** 2


def make_moe(config, dim: int, activation: str, mode: str, device) -> patch_moe.MoEState:
    """A batch of the config's MoEs whose router is :class:`OfficialRouter` with noise ``mode``."""
    model = patch_moe.make_moe(config.n_seeds, dim, n_experts=config.n_experts, n_filters=config.expert_filters,
                               activation=activation, init_scale=config.expert_init_scale, seed=config.seed,
                               device=device)
    model.router = OfficialRouter(dim, config.n_experts, n_seeds=config.n_seeds, mode=mode,
                                  seed=config.seed + 2).to(device)
    return model


def train(config, data, ablation: str, activation: str, device, progress=None) -> patch_moe.MoERecord:
    """One ablation (:data:`ABLATIONS`) of the MoE with ``activation`` experts, trained as Table 1's."""
    check_choice("ablation", ablation, ABLATIONS)
    model = make_moe(config, data.train_x.shape[-1], activation, "none" if ablation == "no_noise" else "fresh",
                     device)
    extra = None
    if ablation == "balance":
        def extra(route):
            return config.balance_weight * official_balance_loss(model.router.last_noisy, route.index)
    return patch_moe.train_moe(model, data, epochs=config.moe_epochs, expert_lr=config.expert_lr,
                               router_lr=config.router_lr, stop_margin=config.stop_margin,
                               stop_loss=config.stop_loss, progress=progress, extra_loss=extra)


def run(config, data_of, device, bar) -> dict:
    """``(ablation, activation) -> MoERecord`` on S1 (nothing when S1 is not among the settings);
    ``data_of(setting)`` makes the data, ``bar(desc)`` a progress wrapper."""
    if "S1" not in config.settings or not config.extra_ablations:
        return {}
    data = data_of("S1")
    return {(ab, act): train(config, data, ab, act, device, bar(f"S1 MoE {act} {ab}"))
            for ab in config.extra_ablations for act in ("cubic", "linear")}


def run_entropy(config, data_of, device, bar) -> dict:
    """``(setting, activation) -> MoERecord`` of the official entropy protocol on ``config.entropy_settings``."""
    out = {}
    for setting in config.entropy_settings:
        data = data_of(setting)
        for act in ("cubic", "linear"):
            model = make_moe(config, data.train_x.shape[-1], act, "fixed", device)
            out[(setting, act)] = patch_moe.train_moe(
                model, data, epochs=config.moe_epochs, expert_lr=config.expert_lr, router_lr=config.router_lr,
                early_stopping=False, per_tensor=True, progress=bar(f"{setting} MoE {act}, entropy protocol"))
    return out


def run_sweep(config, data_of, train_single, known: dict, bar) -> dict:
    """``(setting, filters, activation) -> SingleRecord``: single CNNs on ``config.sweep_settings`` at every
    width of ``config.sweep_filters``, ``config.sweep_seeds`` seeds, trained as Table 1's singles;
    ``train_single(data, act, n_seeds, n_filters, progress)`` trains one batch, and the runs of ``known``
    (``(setting, activation) -> SingleRecord`` at ``config.single_filters``) are reused, not retrained."""
    out = {}
    for setting in config.sweep_settings:
        data = None
        for width in config.sweep_filters:
            for act in ("linear", "cubic"):
                if width == config.single_filters and (setting, act) in known:
                    out[(setting, width, act)] = known[(setting, act)]
                    continue
                data = data if data is not None else data_of(setting)
                out[(setting, width, act)] = train_single(data, act, config.sweep_seeds, width,
                                                          bar(f"{setting} single {act} {width} filters"))
    return out


def sweep_table(records: dict) -> list[dict]:
    """Rows: setting, filters, activation, our mean and std (ddof 0) test and train accuracy, the official
    printout (one run)."""
    rows = []
    for (setting, width, act), rec in records.items():
        official = OFFICIAL_SINGLES.get((setting, width))
        acc, train_acc = rec.test_accuracy.double(), rec.train_accuracy.double()
        rows.append({"setting": setting, "filters": width, "activation": act, "seeds": len(acc),
                     "test_mean": round(float(acc.mean()), 2), "test_std": round(float(acc.std(correction=0)), 2),
                     "train_mean": round(float(train_acc.mean()), 2),
                     "official": None if official is None else official[act == "cubic"]})
    return rows


def entropy_curves(records: dict) -> dict:
    """``"<setting>-<activation>"`` -> per-epoch mean and std (ddof 0) of the dispatch entropy over seeds, with
    the official means at their epochs where they exist."""
    out = {}
    for (setting, act), rec in records.items():
        hist = rec.entropy_history.double()  # (T, S)
        out[f"{setting}-{act}"] = {
            "mean": [round(float(v), 4) for v in hist.mean(1)],
            "std": [round(float(v), 4) for v in hist.std(1, correction=0)],
            "test_accuracy": [round(v, 2) for v in rec.test_accuracy.tolist()],
            "official_epochs": list(OFFICIAL_ENTROPY_EPOCHS),
            "official_mean": list(OFFICIAL_ENTROPY[(setting, act)])}
    return out


def table(records: dict, row) -> list[dict]:
    """Rows of the ablation table (``row(model, setting, acc, ent, epochs)`` formats one)."""
    names = {"balance": "load balancing", "no_noise": "router without noise"}
    return [row(f"MoE {'linear' if act == 'linear' else 'nonlinear'}, {names[ab]}", "S1", rec.test_accuracy,
                rec.entropy, rec.epochs) for (ab, act), rec in records.items()]


def claims(records: dict, config) -> list[Claim]:
    """The load-balancing MoEs beside the third-party numbers (S1); `not run` when they did not run. The router
    without noise has no number to compare with: it is a table, not a claim."""
    out = []
    for slug, act in SLUG_ACT.items():
        rec = records.get(("balance", act))
        for i, kind in enumerate(("accuracy", "entropy")):
            ref_m, ref_s = THIRD_PARTY_BALANCE[act][i]
            if rec is None:
                ours, holds = NOT_RUN, None
            else:
                ours = round(mean(rec.test_accuracy if kind == "accuracy" else rec.entropy), 2)
                holds = abs(ours - ref_m) <= 2 * ref_s
            what = "mean test accuracy (%)" if kind == "accuracy" else "mean final dispatch entropy"
            cid = f"chen2022/load-balancing-{slug}-{kind}"
            out.append(Claim(
                cid, f"S1: {what} of the MoE with {slug} experts and the official load-balancing loss "
                f"(weight {config.balance_weight:g})", f"{ref_m} ± {ref_s}", ours, holds,
                criterion=f"mean of {config.n_seeds} seeds within the third-party mean ± 2 std",
                **ledger.provenance_entry(PROVENANCE, cid)))
    return out
