"""TensorEM follows scikit-learn conventions and recovers a gated MoE."""

import numpy as np
import pytest
import torch

from moetheory import runtime
from moetheory.data import sample_gated_moe
from moetheory.data.gated_moe import random_parameters
from moetheory.estimators import TensorEM
from moetheory.metrics import permutation_error

runtime.set_threads(1)


@pytest.fixture(scope="module")
def problem():
    a, w = random_parameters(1, 6, 3, 2.0, torch.Generator().manual_seed(0))
    a, w = a[0].numpy(), w[0].numpy()
    x, y = sample_gated_moe(40_000, a, w, "linear", 0.1, 1)
    return a, w, x, y


def test_init_only_stores():
    est = TensorEM(n_experts=-1, nonlinearity="nope", noise_std=-3)  # no validation until fit
    assert est.n_experts == -1 and est.nonlinearity == "nope" and est.noise_std == -3
    assert not hasattr(est, "regressors_")


def test_fit_returns_self_with_fitted_attributes(problem):
    a, w, x, y = problem
    est = TensorEM(3, "linear", 0.1, random_state=0)
    assert est.fit(x, y) is est
    assert est.regressors_.shape == (3, 6) and est.gating_.shape == (3, 6)
    assert np.allclose(np.linalg.norm(est.regressors_, axis=1), 1.0)
    assert np.all(est.gating_[-1] == 0) and est.n_iter_ >= 1
    assert permutation_error(est.regressors_, a) < 0.35
    assert est.predict(x[:7]).shape == (7,)
    # the fitted conditional mean explains most of the variance
    assert np.mean((est.predict(x) - y) ** 2) < 0.6 * np.var(y)


def test_random_state_makes_fit_deterministic(problem):
    _, _, x, y = problem
    e1 = TensorEM(3, random_state=5).fit(x, y)
    e2 = TensorEM(3, random_state=5).fit(x, y)
    assert np.array_equal(e1.regressors_, e2.regressors_) and np.array_equal(e1.gating_, e2.gating_)


@pytest.mark.parametrize(
    ("kwargs", "xy", "match"),
    [
        ({"n_experts": 7}, None, "n_experts"),
        ({"nonlinearity": "tanh"}, None, "nonlinearity must be one of 'linear', 'sigmoid', 'relu'"),
        ({"noise_std": 0.0}, None, "noise_std must be a finite number > 0"),
        ({}, "nan", "Input X contains NaN"),
        ({}, "shape", "inconsistent numbers of samples"),
    ],
)
def test_fit_validates(problem, kwargs, xy, match):
    _, _, x, y = problem
    x, y = x[:500].copy(), y[:500].copy()
    if xy == "nan":
        x[3, 2] = np.nan
    if xy == "shape":
        y = y[:-1]
    with pytest.raises(ValueError, match=match):
        TensorEM(**{"n_experts": 3, **kwargs}).fit(x, y)


def test_predict_before_fit_and_wrong_width(problem):
    _, _, x, y = problem
    with pytest.raises(ValueError, match="not fitted"):
        TensorEM(3).predict(x)
    est = TensorEM(3, random_state=0).fit(x[:5000], y[:5000])
    with pytest.raises(ValueError, match="X has 4 features, but TensorEM is expecting 6"):
        est.predict(x[:, :4])
