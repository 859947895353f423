"""Makkuva et al. (2019), the pieces added for the headline comparison: the gating-ratio interval, the baseline
comparison, plain gradient descent, the ReLU/sigmoid panel, a run read back from its record, and the Airfoil
Self-Noise analogue (real data from ``$MOETHEORY_DATA``)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from moetheory import datasets, runtime
from moetheory.papers import makkuva2019 as paper
from moetheory.papers.makkuva2019 import airfoil
from moetheory.papers.makkuva2019.gated_em import gd_mle, log_likelihood, random_start
from moetheory.papers.makkuva2019.gated_moe import random_parameters, sample_batch
from moetheory.reproduce import Report

runtime.set_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOETHEORY_DATA") or ROOT.parent / "shared" / "data")


def _sweep(alg, oracle):
    return {"tensor+EM": {"n": [10, 100], "err_w": np.array([alg, alg])},
            "EM given A": {"n": [10, 100], "err_w": np.array([oracle, oracle])}}


def test_gating_ratio_interval_is_wide_with_few_noisy_instances_and_tight_with_equal_ones():
    rng = np.random.default_rng(0)
    noisy = paper.gating_ratio(_sweep(rng.lognormal(0, 0.5, 5), rng.lognormal(0, 0.5, 5)))
    low, high = noisy["interval"]
    assert low <= noisy["ratio"] <= high and high / low > 1.5  # five noisy instances: not a reading to 2 digits
    exact = paper.gating_ratio(_sweep(np.full(5, 2.0), np.ones(5)))
    assert exact["ratio"] == exact["interval"][0] == exact["interval"][1] == 2.0
    assert exact["instances"] == 5 and exact["n"] == 100


def test_baseline_comparison_aligns_adam_with_the_first_sizes():
    law = np.ones((3, 2))
    sweep = {"tensor": {"n": [1, 2, 3], "err_a": law * [[4], [2], [1]]},
             "tensor+EM": {"n": [1, 2, 3], "err_w": law},
             "joint EM": {"n": [1, 2, 3], "err_a": law, "err_w": 2 * law},
             "Adam": {"n": [1, 2], "err_a": 2 * law[:2], "err_w": law[:2]}}
    cmp = paper.baseline_comparison(sweep, [{"regime": "r", "tensor fail": 0.5, "random-init EM fail": 0.1}])
    assert cmp["regressor"] == {"joint EM": [4.0, 2.0, 1.0], "Adam": [2.0, 1.0]}
    assert cmp["gating"] == {"joint EM": [0.5, 0.5, 0.5], "Adam": [1.0, 1.0]}
    assert cmp["regimes"] == [{"regime": "r", "algorithm": 0.5, "random-init EM": 0.1}]


def test_panel_links_are_validated():
    with pytest.raises(ValueError, match="panel_links"):
        paper.Config(panel_links=("tanh",))


def test_moe_predict_positive_control_and_a_gate_that_matters():
    gen = torch.Generator().manual_seed(0)
    a, w = (t[0].numpy() for t in random_parameters(1, 5, 2, 2.0, gen))
    x = np.random.default_rng(1).standard_normal((50, 5))
    same = airfoil.moe_predict(x, np.stack([a[0], a[0]]), w)  # two equal experts: the gate cannot matter
    assert np.allclose(same, x @ a[0])
    mixed = airfoil.moe_predict(x, a, w)
    gate = np.exp(x @ w.T) / np.exp(x @ w.T).sum(1, keepdims=True)
    assert np.allclose(mixed, (gate * (x @ a.T)).sum(1)) and not np.allclose(mixed, (x @ a.T).mean(1))


def test_airfoil_compare_validates_before_loading():
    with pytest.raises(ValueError, match=r"^n_experts must be an integer in \[2, 4\]; got 5$"):
        airfoil.compare(n_experts=5, download=False)


@pytest.mark.skipif(not (SHARED / "airfoil_self_noise.tsv").is_file(),
                    reason=f"real data not provided: set MOETHEORY_DATA (no {SHARED})")
def test_airfoil_analogue_on_the_real_data(monkeypatch):
    monkeypatch.setenv("MOETHEORY_DATA", str(SHARED))
    (row,) = airfoil.compare(n_splits=1, n_experts=2, n_starts=2, max_iter=20, download=False)
    assert set(row) == {"split", "noise_std", *airfoil.METHODS}
    # OLS on standardised output: R^2 of the linear model on these data is about 0.5 (test MSE about 0.5 Var(y))
    assert 0.3 < row["OLS"] < 0.7 and 0.5 < row["noise_std"] < 0.9
    assert all(np.isfinite(row[m]) and row[m] > 0 for m in airfoil.METHODS)


def test_relu_panel_is_consistent_with_orthogonal_gating():
    """The tensor method for ReLU experts: error falls from n = 1e4 to 1e5 (three instances, medians)."""
    gen = torch.Generator().manual_seed(3)
    cfg = paper.Config(d=6, n_experts=2, panel_sizes=(10_000, 100_000), panel_seeds=3)
    errs = paper._panel(cfg, torch.device("cpu"), gen, False, "relu")["orthogonal"]
    assert np.median(errs[1]) < 0.6 * np.median(errs[0])


def test_plain_gradient_descent_climbs_the_likelihood_and_stays_at_a_stationary_point():
    gen = torch.Generator().manual_seed(5)
    a, w = random_parameters(3, 6, 2, 2.0, gen)
    x, y = sample_batch(4_000, a, w, "linear", 0.1, gen)
    a0, w0 = random_start(3, 2, 6, gen)
    start = log_likelihood(x, y, a0, w0, "linear", 0.1)
    a1, w1 = gd_mle(x, y, a0, w0, "linear", 0.1, steps=200)
    assert (log_likelihood(x, y, a1, w1, "linear", 0.1) > start + 1.0).all()  # it moves, uphill
    assert (w1[:, -1] == 0).all()  # the reference row stays fixed
    a2, w2 = gd_mle(x, y, a1, w1, "linear", 0.1, steps=50)  # from where it stopped: (nearly) nowhere to go
    assert (a2 - a1).abs().max() < 0.05 * (a1 - a0).abs().max()
    with pytest.raises(ValueError, match=r"^gd_step"):
        paper.Config(gd_step=2.5)


def test_a_run_read_back_from_its_record_gives_the_same_claims():
    cfg = paper.Config(d=5, n_experts=2, sample_sizes=(500, 1_000), n_seeds=2, adam_max_n=500, adam_steps=20,
                       em_max_iter=10, panel_sizes=(1_000, 2_000), panel_seeds=2, failure_seeds=2,
                       regimes=(paper.Regime("small", 5, 2, 200),), global_n=300, global_seeds=1,
                       global_norms=(0.1, 10.0), global_directions=1, airfoil_splits=0)
    result = paper.run(cfg, device="cpu")
    data = {"paper": "makkuva2019", "scale": "tiny", "device": result.device, "elapsed_s": 1.0, "versions": {},
            "git_revision": "x", "config": runtime.config_dict(cfg), "metrics": result.metrics(),
            "claims": [c.to_dict() for c in paper.claims(result)]}
    back = paper.from_record(Report.from_json(json.loads(json.dumps(data))))
    assert back.config == cfg
    assert [(c.id, c.holds, c.reproduced) for c in paper.claims(back)] == \
        [(c.id, c.holds, c.reproduced) for c in paper.claims(result)]


def test_airfoil_offline_without_the_data_is_one_line_and_a_run_marks_it_not_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MOETHEORY_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(datasets.DataNotFound) as info:
        airfoil.compare(n_splits=1, download=False)
    assert "\n" not in str(info.value) and "MOETHEORY_DATA" in str(info.value) and "airfoil" in str(info.value)
    assert airfoil.splits_or_none(2) is None
    assert capsys.readouterr().out.startswith("Airfoil analogue not run: moetheory: data set airfoil")


def test_airfoil_with_a_wrong_checksum_is_refused_in_one_line(monkeypatch, tmp_path):
    bad = tmp_path / "airfoil_self_noise.tsv"
    bad.write_text("frequency\tangle\tchord\tvelocity\tthickness\tpressure\n800\t0\t0.3048\t71.3\t0.00266\t126.2\n")
    monkeypatch.setenv("MOETHEORY_DATA", str(tmp_path))
    monkeypatch.setattr(datasets, "_VERIFIED", {})
    with pytest.raises(datasets.ChecksumMismatch) as info:
        airfoil.compare(n_splits=1, download=False)
    assert "\n" not in str(info.value) and str(bad) in str(info.value)
    assert datasets.REGISTRY["airfoil"].files["table"].sha256 in str(info.value)
