"""chen2022.fmnist: the Fashion-MNIST-Rotate analogue of the paper's CIFAR-10-Rotate experiment: the data, the matched
active-parameter count, the routing measure (positive and negative controls), the claims, a tiny run on the real data
(where provided) and the one-line error without them."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from moetheory import datasets as ds
from moetheory import runtime
from moetheory.ledger import NOT_RUN
from moetheory.papers import chen2022
from moetheory.papers.chen2022 import fmnist

runtime.set_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOETHEORY_DATA") or ROOT.parent / "shared" / "data")  # CI sets MOETHEORY_DATA
needs_data = pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(),
                                reason=f"Fashion-MNIST not provided: set MOETHEORY_DATA (no {SHARED}/fashion-mnist)")


def blobs(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 28, 28)`` uint8 images with structure (smoothed noise in the centre disc), unlike a rotation of
    themselves."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((n, 28, 28)), (0, 1.5, 1.5))
    yy, xx = np.mgrid[:28, :28] - 13.5
    img = img * (yy ** 2 + xx ** 2 < 13 ** 2)
    return (255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)


def corr(a, b) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_rotate_data_labels_balanced_classes_paired_and_the_second_half_rotated():
    imgs, cls = blobs(6), np.arange(6) % 10
    data, mean, std = fmnist.make_rotate(imgs, cls)
    assert data.x.shape == (12, 1, fmnist.CROP, fmnist.CROP)
    assert data.y.tolist() == [0] * 6 + [1] * 6 and data.cls.tolist() == cls.tolist() * 2
    assert abs(float(data.x.mean())) < 1e-9 and abs(float(data.x.std(correction=0)) - 1) < 1e-9
    up = imgs.astype(np.float64) / 255
    expect = fmnist.center_crop(fmnist.rotate(up))
    assert np.allclose(data.x[6:, 0].numpy() * std + mean, expect, atol=1e-5)
    for a in up:  # rotating back by -30 degrees recovers the upright crop better than the rotated crop matches it
        r = fmnist.rotate(a[None])[0]
        back = fmnist.rotate(r[None], -fmnist.ANGLE)[0]
        c = fmnist.center_crop
        assert corr(c(back), c(a)) > 0.9 and corr(c(back), c(a)) > corr(c(r), c(a)) + 0.2


def test_the_crop_hides_the_rotation_corners():
    ones = np.ones((1, 28, 28))
    assert fmnist.center_crop(fmnist.rotate(ones)).min() > 0.99  # no zero corner inside the crop
    assert fmnist.rotate(ones).min() < 0.01  # ... while the full frame has them


def test_stratified_subsample_is_deterministic_and_per_class():
    labels = np.repeat(np.arange(10), [30] * 9 + [3])  # class 9 has only 3 images
    a, b = fmnist.stratified_indices(labels, 5), fmnist.stratified_indices(labels, 5)
    assert np.array_equal(a, b) and len(np.unique(a)) == len(a)
    assert np.bincount(labels[a]).tolist() == [5] * 9 + [3]
    assert not np.array_equal(a, fmnist.stratified_indices(labels, 5, seed=1))
    assert np.array_equal(fmnist.stratified_indices(labels, 30), np.arange(len(labels)))


@pytest.mark.parametrize("filters", [4, 6, 8, 12])
def test_single_cnn_matches_the_moes_active_parameters(filters):
    moe = fmnist.MoE(filters)
    single = fmnist.CNN(filters, fmnist.single_width(filters))
    active = fmnist.active_params(moe)
    assert active == fmnist.n_params(moe.router) + fmnist.n_params(moe.experts[0]) < fmnist.n_params(moe)
    per_channel = 9 * filters + 1 + 18  # one more channel of the single's second conv
    assert abs(fmnist.n_params(single) - active) <= per_channel / 2
    if filters == 8:
        assert abs(fmnist.n_params(single) - active) / active < 0.02


def test_router_starts_at_zero_and_noise_only_in_training():
    moe = fmnist.MoE(4)
    x = torch.randn(16, 1, fmnist.CROP, fmnist.CROP)
    moe.eval()
    probs, gate, _ = moe.route(x)
    assert torch.allclose(probs, torch.full_like(probs, 0.25)) and torch.allclose(gate, torch.full_like(gate, 0.25))
    moe.train()
    probs, _, _ = moe.route(x, torch.Generator().manual_seed(0))
    assert float((probs.detach() - 0.25).abs().max()) > 0.01
    out, balance, index = moe(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out.sum(-1), torch.ones(16, dtype=out.dtype)) and index.shape == (16,)
    assert 1.0 - 1e-9 <= float(balance.detach()) <= 4.0  # E^2 mean(p * f) is 1 when balanced, up to E when collapsed


def test_routing_measure_reads_one_when_routing_follows_the_class_and_near_zero_when_random():
    rng = np.random.default_rng(0)
    n = 20000
    cls = rng.integers(0, 10, n)
    follows = cls % 4  # the expert is a function of the class: positive control
    assert fmnist.class_information(cls, follows) == pytest.approx(1.0)
    assert np.allclose(fmnist.routing_matrix(cls, follows).sum(1), 1.0)
    assert fmnist.routing_matrix(cls, follows)[5].tolist() == [0, 1, 0, 0]
    random = rng.integers(0, 4, n)
    bias = (10 - 1) * (4 - 1) / (2 * n) / np.log(4)  # Miller-Madow: the expected value under independence
    assert fmnist.class_information(cls, random) < 10 * bias
    noisy = np.where(rng.random(n) < 0.5, follows, random)  # half follows the class
    assert 0.2 < fmnist.class_information(cls, noisy) < 0.8
    assert fmnist.class_information(cls, np.zeros(n, dtype=int)) == 0.0  # one expert takes all: no routing


def fake(moe, single, info):
    k = len(moe)
    return fmnist.FmnistResult(list(moe), list(single), [np.eye(10, 4)] * k, list(info), list(moe), list(single),
                               1734, 1757, 100, 100)


def test_claims_hold_fail_and_not_run_with_the_tables_provenance():
    held = fmnist.claims(fake((80, 82), (78, 79), (0.6, 0.8)))
    failed = fmnist.claims(fake((78, 79), (80, 80), (0.3, 0.6)))
    skipped = fmnist.claims(None)
    assert [c.holds for c in held] == [True, True] and [c.holds for c in failed] == [False, False]
    assert all(c.holds is None and c.reproduced == NOT_RUN for c in skipped)
    assert held[0].reproduced == "MoE 81 vs single 78 (difference +2 points)" and held[1].reproduced == 0.7
    for c in held:
        assert c.id.startswith("chen2022/fmnist-rotate-") and "ANALOGUE" in c.statement
        entry = chen2022.PAPER.provenance(c.id, {})
        assert (c.provenance, c.source) == (entry["provenance"], entry["source"])
    assert held[0].provenance == "third party" and "79.6" in held[0].source and "76.78" in held[0].source
    assert held[1].provenance == "derived"


@pytest.mark.parametrize("field, value", [("fmnist_per_class", -1), ("fmnist_per_class", 6001),
                                          ("fmnist_test_per_class", 0), ("fmnist_epochs", 0),
                                          ("fmnist_seeds", 0), ("fmnist_filters", 0), ("fmnist_epochs", 2.5)])
def test_config_errors_name_the_field_and_range(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be an integer") as info:
        chen2022.Config(**{field: value})
    assert "\n" not in str(info.value)


@needs_data
def test_tiny_run_on_real_data_beats_chance_on_the_training_set(monkeypatch):
    monkeypatch.setenv(ds.ENV, str(SHARED))
    cfg = chen2022.config("tiny")
    res = fmnist.run(cfg, download=False)
    assert res.n_train == 2 * 10 * cfg.fmnist_per_class and res.n_test == 2 * 10 * cfg.fmnist_test_per_class
    assert len(res.moe_accuracy) == len(res.routing) == cfg.fmnist_seeds
    assert all(np.allclose(r.sum(1), 1.0) for r in res.routing)
    assert res.moe_active == 1734 and res.single_params == 1757
    again = fmnist.run(runtime.replace_config(cfg, fmnist_seeds=1), download=False)
    assert again.moe_accuracy[0] == res.moe_accuracy[0]  # deterministic: the same seed gives the same run
    longer = fmnist.run(runtime.replace_config(cfg, fmnist_per_class=40, fmnist_epochs=10, fmnist_seeds=1),
                        download=False)  # 70 steps of batch 128
    chance = 50 + 3 * 100 * 0.5 / np.sqrt(longer.n_train)  # three standard errors above a coin's accuracy
    assert longer.moe_train_accuracy[0] > chance and longer.single_train_accuracy[0] > chance


def test_offline_without_the_data_is_one_line_and_the_claims_are_not_run(monkeypatch, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ds.ENV, str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    entry = ds.REGISTRY["fashion-mnist"]
    monkeypatch.setitem(ds.REGISTRY, "fashion-mnist", dataclasses.replace(entry, system_dirs=(str(empty),)))
    cfg = chen2022.config("tiny")
    with pytest.raises(ds.DataNotFound) as info:
        fmnist.run(cfg, download=False)
    message = str(info.value)
    assert "\n" not in message and "fashion-mnist" in message and "MOETHEORY_DATA" in message
    assert "dataset-fashion-mnist" in message
    assert fmnist.run_or_none(cfg) is None
    assert capsys.readouterr().out.count("\n") == 1
    result = chen2022.Result(cfg)
    ids = {c.id: c for c in chen2022.claims(result)}
    assert ids[fmnist.MOE_VS_SINGLE_ID].reproduced == ids[fmnist.ROUTING_ID].reproduced == NOT_RUN
    assert fmnist.run(runtime.replace_config(cfg, fmnist_per_class=0)) is None  # 0 skips without looking
