"""Tests of the chen2022 chapter: Definition 3.1's generator, the patch-CNN experts, the MoE, the presets."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from moetheory import routing, runtime
from moetheory.data import CHEN_SETTINGS, make_chen_clusters
from moetheory.experts import get_activation
from moetheory.papers import chen2022
from moetheory.papers.chen2022 import bound, patch_cnn, patch_moe

runtime.set_threads(1)

S1_IDS = {
    "chen2022/moe-nonlinear-accuracy", "chen2022/moe-linear-accuracy", "chen2022/single-nonlinear-accuracy",
    "chen2022/single-linear-accuracy", "chen2022/moe-nonlinear-entropy", "chen2022/moe-linear-entropy",
    "chen2022/single-expert-bound", "chen2022/bound-positive-control",
}  # the ids that a run on S1 alone (the tiny preset) decides
OTHER_IDS = {f"chen2022/{s}-moe-{slug}-{kind}" for s in ("s2", "s3", "s4") for slug in ("nonlinear", "linear")
             for kind in ("accuracy", "entropy")}
S1_IDS = S1_IDS | {f"chen2022/load-balancing-{slug}-{kind}" for slug in ("nonlinear", "linear")
                   for kind in ("accuracy", "entropy")}  # the ablations (chen2022.extras), S1 only
FMNIST_IDS = {"chen2022/fmnist-rotate-moe-vs-single", "chen2022/fmnist-rotate-routing-by-class"}  # test_chen2022_fmnist


@pytest.fixture(scope="module")
def small():
    return make_chen_clusters("S1", 400, 200)


def test_generator_is_deterministic_and_a_prefix_of_the_official_stream(small):
    other = make_chen_clusters("S1", 300, 100)  # a different cache entry: generated afresh
    assert torch.equal(small.train_x[:300], other.train_x)
    assert torch.equal(small.features, other.features)


def test_s1_cluster_sizes_match_the_official_notebook_output():
    # The official S1 notebook prints the training-set routing of cluster 0..3: 4035, 3999, 4006, 3960 examples.
    data = make_chen_clusters("S1")
    assert data.train_cluster.bincount().tolist() == [4035, 3999, 4006, 3960]
    assert data.train_x.shape == data.test_x.shape == (16000, 4, 50)


@pytest.mark.parametrize("setting", ["S2", "verify"])
def test_features_and_centers_are_orthonormal(setting):
    data = make_chen_clusters(setting, 8, 8)
    basis = torch.cat([data.features, data.centers]).double()
    assert torch.allclose(basis @ basis.T, torch.eye(8, dtype=torch.double), atol=1e-6)


def test_each_example_holds_the_four_patches_of_definition_3_1(small):
    spec = CHEN_SETTINGS["S1"]
    x = small.train_x.double() / 10  # undo the official x10
    v, c = small.features.double()[small.train_cluster], small.centers.double()[small.train_cluster]
    on_v = torch.einsum("npd,nd->np", x, v)  # (n, P)
    on_c = torch.einsum("npd,nd->np", x, c)
    p_signal = (x - on_v.unsqueeze(-1) * v.unsqueeze(1)).norm(dim=-1).argmin(1)  # the patch parallel to v_k
    alpha_y = on_v.gather(1, p_signal[:, None]).squeeze(1)
    assert torch.equal(alpha_y.sign(), small.train_y.double() * 2 - 1)  # label 1 <-> y = +1
    assert alpha_y.abs().min() >= spec.alpha[0] - 1e-5 and alpha_y.abs().max() <= spec.alpha[1] + 1e-5
    beta = on_c.abs().amax(1)
    assert beta.min() >= spec.beta[0] - 1e-5 and beta.max() <= spec.beta[1] + 1e-5
    positions = torch.stack([p_signal, on_c.abs().argmax(1)], 1)
    assert bool((positions[:, 0] != positions[:, 1]).all())
    assert len(set(p_signal.tolist())) == 4  # patches are permuted


def test_generator_validation():
    with pytest.raises(ValueError, match="setting"):
        make_chen_clusters("S5")
    with pytest.raises(ValueError, match="n_train"):
        make_chen_clusters("S1", 0)


@given(n=st.integers(1, 300), seeds=st.integers(1, 3), experts=st.integers(1, 5), k=st.integers(1, 2),
       chunk=st.integers(1, 400), seed=st.integers(0, 99))
@settings(max_examples=40, deadline=None)
def test_tiles_hold_each_assignment_once_in_its_own_expert_group(n, seeds, experts, k, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    k = min(k, experts)
    index = torch.rand(seeds, n, experts, generator=g).topk(k, -1).indices  # distinct experts per token
    tiles = patch_moe.plan_tiles(index, experts, chunk_tokens=chunk)
    flat = torch.arange(seeds * n * k)
    seed_of, token_of = flat // (n * k), flat // k % n
    assert torch.equal(tiles.order.sort().values, flat)  # every assignment once
    assert torch.equal(tiles.row, seed_of[tiles.order] * n + token_of[tiles.order])
    tile_of = tiles.position // patch_moe.TILE_ROWS
    assert torch.equal(tiles.group[tile_of], seed_of[tiles.order] * experts + index.reshape(-1)[tiles.order])
    assert torch.equal(tiles.source[tiles.position], token_of[tiles.order])  # the right row
    assert tiles.position.unique().numel() == flat.numel()  # no two assignments share a slot
    padding = torch.ones(tiles.source.numel(), dtype=torch.bool)
    padding[tiles.position] = False
    assert bool((tiles.source[padding] == n).all())  # the rest is the zero row
    chunk_of = token_of[tiles.order] // chunk  # tiles come chunk by chunk, and no tile mixes chunks
    assert bool((chunk_of[1:] >= chunk_of[:-1]).all())
    first_chunk = torch.full((tiles.n_tiles,), -1)
    first_chunk[tile_of] = chunk_of
    assert bool((first_chunk[tile_of] == chunk_of).all())
    groups = (chunk_of * seeds + seed_of[tiles.order]) * experts + index.reshape(-1)[tiles.order]
    sizes = torch.bincount(groups)
    assert tiles.n_tiles == int(((sizes + patch_moe.TILE_ROWS - 1) // patch_moe.TILE_ROWS).sum())  # tight padding


@pytest.mark.parametrize("activation", ["cubic", "relu", "gelu", "tanh", "sigmoid", "linear"])
def test_blocked_patch_cnn_matches_conv1d_with_gradients(activation, monkeypatch):
    monkeypatch.setattr(patch_cnn, "CHUNK_FLOATS", 64)  # force many row blocks
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 4, 5, generator=g, dtype=torch.double)  # (G, rows, P, d)
    w = torch.randn(2, 5, 6, generator=g, dtype=torch.double, requires_grad=True)
    b = torch.randn(2, 1, 6, generator=g, dtype=torch.double, requires_grad=True)
    ours = patch_cnn.cnn_logits(x, w, b, activation)
    readout = torch.randn(6, 1, generator=g, dtype=torch.double)
    if activation != "linear":  # the read-out form on gathered rows, as the MoE calls it
        wg, bg = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
        source = torch.arange(18).flip(0)  # group g, row r <- x.view(18, 4, 5)[17 - (9 g + r)]
        gathered = patch_cnn.PatchActivationSum.apply(x.reshape(18, 4, 5), wg, bg, activation, source, readout)
    upstream = torch.randn(ours.shape, generator=g, dtype=torch.double)
    (ours * upstream).sum().backward()
    act = (lambda t: t**3) if activation == "cubic" else get_activation(activation)
    wr, br = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ref = conv_filter_sums(x, wr, br, act)
    ref = torch.stack([ref[..., :3].sum(-1), ref[..., 3:].sum(-1)], -1)
    (ref * upstream).sum().backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(w.grad, wr.grad)
    torch.testing.assert_close(b.grad, br.grad)
    if activation != "linear":
        flipped = x.reshape(18, 4, 5).flip(0).view(2, 9, 4, 5)
        wh, bh = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
        href = conv_filter_sums(flipped, wh, bh, act) @ readout
        torch.testing.assert_close(gathered, href)
        weights = torch.randn(gathered.shape, generator=g, dtype=torch.double)
        (gathered * weights).sum().backward()
        (href * weights).sum().backward()
        torch.testing.assert_close(wg.grad, wh.grad)
        torch.testing.assert_close(bg.grad, bh.grad)


def conv_filter_sums(x, w, b, act):
    """Reference: the official ``Conv1d(kernel = stride = d)`` on each group's flattened rows, ``sigma`` summed over
    the patches: ``x`` ``(G, rows, P, d)`` -> ``(G, rows, F)``."""
    groups, rows, n_patches, dim = x.shape
    return torch.stack([act(F.conv1d(x[grp].reshape(rows, 1, n_patches * dim), w[grp].T.unsqueeze(1), b[grp, 0],
                                     stride=dim)).sum(2) for grp in range(groups)])


@pytest.mark.parametrize("activation", ["cubic", "linear"])
def test_single_models_side_by_side_match_each_seed_alone(activation):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 4, 5, generator=g, dtype=torch.double)
    w = torch.randn(3, 5, 6, generator=g, dtype=torch.double)
    b = torch.randn(3, 1, 6, generator=g, dtype=torch.double)
    together = patch_cnn.single_logits(x, w, b, activation)  # (S, n, 2)
    alone = torch.stack([patch_cnn.cnn_logits(x.unsqueeze(0), w[s:s + 1], b[s:s + 1], activation)[0] for s in range(3)])
    torch.testing.assert_close(together, alone)
    if activation == "linear":  # given the patch sums and the true number of patches
        summed = patch_cnn.single_logits(x.sum(1, keepdim=True), w, b, activation, n_patches=4)
        torch.testing.assert_close(summed, alone)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize(("activation", "patience_after"), [("cubic", 100), ("cubic", 3), ("linear", 3)])
def test_train_single_equals_each_seed_trained_alone(float64, monkeypatch, activation, patience_after):
    """``train_single``'s claim: one Adam over the stacked (S, ...) parameters is S independent Adams. Each seed
    trained alone from its slice of the stacked initialisation gives the same losses, epochs and accuracies, also
    when early stopping (after ``patience_after`` epochs) stops the seeds at different epochs."""
    data = make_chen_clusters("S1", 64, 32)
    opts = dict(n_filters=4, activation=activation, lr=0.01, epochs=40, patience_after=patience_after,
                stop_margin=0.0, init_scale=1.0, seed=0)
    together = patch_moe.train_single(data, n_seeds=3, **opts)
    w, b = patch_moe.init_filters((3, 4), data.train_x.shape[-1], 1.0, torch.Generator().manual_seed(0), "cpu")
    epochs = together.epochs.tolist()
    if patience_after < 40:
        assert len(set(epochs)) > 1, epochs  # the seeds stop at different epochs: the restore path is exercised
    for s in range(3):
        init = (w[s:s + 1].detach().clone().requires_grad_(), b[s:s + 1].detach().clone().requires_grad_())
        monkeypatch.setattr(patch_moe, "init_filters", lambda *args, init=init, **kwargs: init)
        alone = patch_moe.train_single(data, n_seeds=1, **opts)
        steps = alone.loss_history.shape[0]
        assert int(alone.epochs[0]) == epochs[s]
        torch.testing.assert_close(together.loss_history[:steps, s], alone.loss_history[:, 0], rtol=1e-10, atol=0)
        frozen = together.loss_history[steps - 1:, s]  # after its stop a seed's loss is held
        assert torch.equal(frozen, frozen[:1].expand_as(frozen))
        assert float(together.test_accuracy[s]) == float(alone.test_accuracy[0])
        assert float(together.train_accuracy[s]) == float(alone.train_accuracy[0])


@pytest.mark.parametrize("activation", ["cubic", "relu", "linear"])
def test_moe_forward_equals_every_expert_on_every_row(small, activation, float64):
    # float64: the two sides sum in other orders, and the class margin cancels most of the cubes' size
    model = patch_moe.make_moe(2, 50, n_experts=3, n_filters=4, activation=activation, init_scale=1.0, seed=3)
    with torch.no_grad():
        model.router.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    x = small.train_x[:64].double()
    state = model.generator.get_state()
    margin, route = model.forward(*model.inputs(x), 4)
    model.generator.set_state(state)
    again = model.router(x.sum(1).expand(2, -1, -1), generator=model.generator)
    assert torch.equal(again.index, route.index)
    every = patch_cnn.cnn_logits(x.unsqueeze(0), model.weight.view(6, 50, 4), model.bias.view(6, 1, 4), activation)
    dense = routing.dense_combine(every.view(2, 3, 64, 2), again)
    reference = dense[..., 1] - dense[..., 0]
    torch.testing.assert_close(margin, reference)
    upstream = torch.randn(margin.shape, generator=torch.Generator().manual_seed(1))
    params = (model.weight, model.bias, model.router.weight)
    ours = torch.autograd.grad((margin * upstream).sum(), params)
    expected = torch.autograd.grad((reference * upstream).sum(), params)
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_a_backward_pass_through_overwritten_slopes_is_refused(small):
    model = patch_moe.make_moe(2, 50, n_experts=3, n_filters=4, activation="cubic", init_scale=1.0, seed=3)
    rows, xsum = model.inputs(small.train_x[:64])
    first, _ = model.forward(rows, xsum, 4)
    second, _ = model.forward(rows, xsum, 4)  # reuses the workspace that holds the first pass's slopes
    second.sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.sum().backward()


def test_double_softmax_loss_cannot_go_below_log_1_plus_e_inverse():
    perfect = torch.tensor([[math.inf, -math.inf]])  # (S=1, n=2) margins: softmax outputs (0, 1) and (1, 0)
    loss = patch_moe._per_seed_loss(perfect, torch.tensor([1, 0]))
    assert math.isclose(float(loss), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    margin = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.randint(0, 2, (50,), generator=torch.Generator().manual_seed(1))
    official = torch.softmax(torch.stack([torch.zeros_like(margin), margin], -1), -1)  # the model's output
    expected = F.cross_entropy(official.transpose(1, 2), y.expand(3, -1), reduction="none").mean(-1)
    torch.testing.assert_close(patch_moe._per_seed_loss(margin, y), expected)
    assert patch_moe.MIN_LOSS < chen2022.Config().stop_loss < patch_moe.MIN_LOSS + 1e-3


def test_config_validation_names_the_parameter():
    with pytest.raises(ValueError, match="n_seeds"):
        chen2022.Config(n_seeds=0)
    with pytest.raises(ValueError, match="settings"):
        chen2022.Config(settings=("S9",))
    with pytest.raises(ValueError, match="expert_filters"):
        chen2022.Config(expert_filters=15)
    with pytest.raises(ValueError, match="bound_activations"):
        chen2022.Config(bound_activations=("swish",))
    with pytest.raises(ValueError, match="bound_settings must be one of 'verify', 'S3', 'S4'"):
        chen2022.Config(bound_settings=("S1",))  # S1 has gamma ~ U(0.5, 3): not Theorem 4.1's hypothesis
    with pytest.raises(ValueError, match="bound_filters"):
        chen2022.Config(bound_filters=7)
    with pytest.raises(ValueError, match="scale"):
        chen2022.config("huge")


def test_tiny_preset_runs_end_to_end_with_every_claim():
    cfg = chen2022.config("tiny")
    result = chen2022.run(cfg, device="cpu")
    claims = chen2022.claims(result)
    assert {c.id for c in claims} == S1_IDS | OTHER_IDS | FMNIST_IDS
    assert all(isinstance(c.holds, bool) for c in claims if c.id in S1_IDS)
    assert all(c.holds is None and c.reproduced == "not run" for c in claims if c.id in OTHER_IDS)
    assert set(result.bound) == {(s, act) for s in cfg.bound_settings for act in cfg.bound_activations}
    per_seed = result.metrics()["per_seed"]["S1-cubic"]
    assert per_seed["accuracy"] == [round(v, 2) for v in result.moe[("S1", "cubic")].test_accuracy.tolist()]
    assert len(per_seed["entropy"]) == len(per_seed["epochs"]) == cfg.n_seeds
    rec = result.moe[("S1", "cubic")]
    assert rec.entropy_history.shape[1] == cfg.n_seeds
    assert bool((rec.epochs <= cfg.moe_epochs).all())
    assert rec.routing_matrix.sum().item() == cfg.n_seeds * cfg.n_train
    assert bool(((rec.entropy >= 0) & (rec.entropy <= math.log(4) + 1e-6)).all())
    json.dumps(result.metrics())


def test_table_std_is_the_official_np_std_with_ddof_0():
    values = torch.tensor([99.0, 97.0, 98.5])
    assert chen2022._stats(values)["std"] == pytest.approx(float(np.std(values.numpy())), abs=1e-4)
    assert chen2022._stats(values)["std"] < float(values.std())  # not the ddof-1 value
    assert chen2022._stats(torch.tensor([80.0]))["std"] == 0.0


# --- Theorem 4.1: the symmetry argument on trained single models, and the positive control --------------------


@pytest.mark.parametrize("setting", ["verify", "S3", "S4"])
def test_the_non_additive_rule_beats_the_bound_where_the_theorem_applies(setting):
    """Positive control: on data satisfying D_alpha = D_gamma the 87.5 % bound binds additive models only; the
    non-additive rule (cluster from the center patch, sign of its feature) classifies almost every test example."""
    assert CHEN_SETTINGS[setting].alpha == CHEN_SETTINGS[setting].gamma  # the theorem's hypothesis
    data = make_chen_clusters(setting, 8, 4000)
    assert bound.rule_accuracy(data) > 99.0 > chen2022.BOUND_LIMIT
    # the rule needs the cluster: with the centers shuffled it reads the wrong feature and falls to chance
    wrong = data.centers.roll(1, 0)
    margin = bound.cluster_rule_margin(data.test_x, data.features, wrong)
    assert abs(float(((margin > 0).long() == data.test_y).double().mean()) * 100 - 50) < 5


@pytest.fixture(scope="module")
def trained_singles():
    """Single CNNs of every activation trained briefly on the verify data, in float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        data = make_chen_clusters("verify", 256, 8)
        return data, {act: patch_moe.train_single(data, n_seeds=2, n_filters=6, activation=act, lr=0.01, epochs=60,
                                                  seed=1)
                      for act in ("linear", "cubic", "relu", "celu", "gelu", "tanh")}
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("act", ["linear", "cubic", "relu", "celu", "gelu", "tanh"])
@pytest.mark.parametrize(("k", "k2", "a", "b", "beta"), [(0, 1, 12.0, 15.0, 13.0), (3, 2, 5.0, 19.0, 20.0)])
def test_mixed_sign_margins_of_a_trained_single_cnn_sum_to_zero(trained_singles, act, k, k2, a, b, beta):
    """The proof's symmetry argument on trained models: for F(x) = sum_p f(x_p) the signed margins of the four
    coupled mixed-sign examples cancel, so one of them is misclassified (test error >= 1/8 by averaging)."""
    data, models = trained_singles
    rec = models[act]
    noise = 0.3 * data.features[(k + 2) % 4] + 0.1 * data.centers[(k + 3) % 4]  # any fourth patch
    x, y = bound.coupled_mixed_examples(data.features, data.centers, k, k2, a, b, beta, noise)
    for order in (torch.arange(4), torch.tensor([2, 0, 3, 1])):  # the patch order does not matter
        margins = bound.signed_margins(patch_cnn.single_logits(x[:, order], rec.weight, rec.bias, act), y)  # (S, 4)
        scale = margins.abs().sum(-1)
        assert bool((scale > 1e-3).all())  # the margins are not trivially zero
        assert bool((margins.sum(-1).abs() <= 1e-9 * scale).all()), margins
        assert bool(((margins <= 0).any(-1)).all())  # hence one of the four is not classified correctly
    # the non-additive rule classifies all four: its margins sum to a positive number, not zero
    rule = bound.cluster_rule_margin(x, data.features, data.centers)
    assert bool((torch.where(y.bool(), rule, -rule) > 0).all())


def test_coupled_examples_refuse_one_cluster():
    f = torch.eye(8, 50)
    with pytest.raises(ValueError, match="k2 must differ from k"):
        bound.coupled_mixed_examples(f[:4], f[4:], 1, 1, 1.0, 1.0, 1.0, torch.zeros(50))
    with pytest.raises(ValueError, match="k2"):
        bound.coupled_mixed_examples(f[:4], f[4:], 1, 4, 1.0, 1.0, 1.0, torch.zeros(50))
