"""Scikit-learn estimators. ``TensorEM`` is the algorithm of Makkuva et al. (2019), derived and tested in
``book/makkuva2019.ipynb``: regressors by the cubic/quadratic output transforms and the tensor power method, then
the gating by EM with the regressors held fixed."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from moetheory.checks import check_choice, check_float, check_int
from moetheory.papers.makkuva2019 import moments
from moetheory.papers.makkuva2019.gated_em import gating_em
from moetheory.papers.makkuva2019.gated_moe import NONLINEARITIES, link

__all__ = ["TensorEM"]


def _torch_seed(random_state) -> int:
    """The seed of the fit's torch generator, drawn from ``random_state``: an int, ``None`` or a
    ``numpy.random.Generator`` (through ``numpy.random.default_rng``, whose stream the recorded fits follow), or a
    legacy ``numpy.random.RandomState`` (scikit-learn's convention; ``check_random_state`` would turn an int into
    one, whose stream differs)."""
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**63 - 1, dtype=np.int64))
    return int(np.random.default_rng(random_state).integers(2**63 - 1))


class TensorEM(RegressorMixin, BaseEstimator):
    """Consistent estimator of a gated mixture of k experts, y = g(a_z^T x) + noise, z ~ softmax(W x), x ~ N(0, I).

    A scikit-learn regressor: ``get_params``, ``set_params``, ``clone`` and grid search work, and ``score`` is the
    R^2 of ``predict``. It needs n_features >= n_experts and n_samples >= 2 n_features, and is consistent only
    under the model's assumptions (standard Gaussian inputs, the known noise level): on other data the fit is
    defined but carries no guarantee.

    Parameters
    ----------
    n_experts : int >= 2, at most the input dimension.
    nonlinearity : "linear", "sigmoid" or "relu" (the expert link g).
    noise_std : the known noise level sigma > 0.
    random_state : int, None, numpy Generator or RandomState; seeds the power method's restarts and the gating EM
        start.
    n_restarts, n_power_iter : tensor power method restarts and iterations per component.
    max_iter, tol : gating EM iterations and relative tolerance on W.

    Attributes
    ----------
    regressors_ : (k, d) unit vectors a_i.  gating_ : (k, d), last row zero.  mixing_ : (k,) E[softmax_i(W x)]
    implied by the tensor eigenvalues.  n_iter_ : gating EM iterations.  n_features_in_ : d.
    feature_names_in_ : the column names, when X had string column names.
    """

    def __init__(self, n_experts=2, nonlinearity="linear", noise_std=0.1, random_state=None, *, n_restarts=10,
                 n_power_iter=30, max_iter=200, tol=1e-6):
        self.n_experts = n_experts
        self.nonlinearity = nonlinearity
        self.noise_std = noise_std
        self.random_state = random_state
        self.n_restarts = n_restarts
        self.n_power_iter = n_power_iter
        self.max_iter = max_iter
        self.tol = tol

    def _validate(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """The parameters, then ``X`` (n, d) and ``y`` (n,) as finite float64 arrays with n >= 2 d and d >= k."""
        k = check_int("n_experts", self.n_experts, 2)
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        check_float("noise_std", self.noise_std, 0.0, low_open=True)
        check_int("n_restarts", self.n_restarts, 1)
        check_int("n_power_iter", self.n_power_iter, 1)
        check_int("max_iter", self.max_iter, 1)
        check_float("tol", self.tol, 0.0)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)  # finite, 2-d X, 1-d y, same n
        y = np.asarray(y, dtype=np.float64)
        n, d = X.shape
        if k > d:
            raise ValueError(f"n_experts must be <= n_features={d} (the regressors must be linearly "
                             f"independent); got n_experts={k}")
        if n < 2 * d:
            raise ValueError(f"TensorEM needs n_samples >= 2 * n_features = {2 * d} (second and third moments "
                             f"in d dimensions); got n_samples={n}")
        return X, y

    def fit(self, X, y):
        """Estimate the regressors by the tensor method, then the gating by EM; returns ``self``."""
        X, y = self._validate(X, y)
        gen = torch.Generator().manual_seed(_torch_seed(self.random_state))
        k, d = self.n_experts, X.shape[1]
        x_t, y_t = (torch.from_numpy(np.require(a, requirements="W"))[None] for a in (X, y))  # torch wants writable
        est = moments.estimate_regressors(x_t, y_t, k, self.nonlinearity, self.noise_std,
                                         n_restarts=self.n_restarts, n_iter=self.n_power_iter, generator=gen)
        w0 = torch.randn(1, k, d, generator=gen, dtype=torch.float64) / np.sqrt(d)
        w0[:, -1] = 0.0
        w, n_iter = gating_em(x_t, y_t, est["regressors"], w0, self.nonlinearity, float(self.noise_std),
                              max_iter=self.max_iter, tol=self.tol)
        self.regressors_ = est["regressors"][0].numpy()
        self.mixing_ = est["mixing"][0].numpy()
        self.gating_ = w[0].numpy()
        self.n_iter_ = int(n_iter[0])
        return self

    def predict_gating(self, X) -> np.ndarray:
        """Gating probabilities softmax(W x): ``(n, k)``. Not ``predict_proba``: scikit-learn reserves that name
        for classifiers, and meta-estimators read its presence as one."""
        return self._gate(self._check_X(X))

    def predict(self, X) -> np.ndarray:
        """The conditional mean E[y | x] = sum_i softmax_i(W x) g(a_i^T x): ``(n,)``."""
        X = self._check_X(X)
        g = link(self.nonlinearity)(torch.from_numpy(X @ self.regressors_.T)).numpy()
        return (self._gate(X) * g).sum(1)

    def _gate(self, X: np.ndarray) -> np.ndarray:
        logits = X @ self.gating_.T  # (n, k)
        p = np.exp(logits - logits.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def _check_X(self, X) -> np.ndarray:
        """A fitted estimator's ``X``: finite float64 ``(n, n_features_in_)``."""
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)
