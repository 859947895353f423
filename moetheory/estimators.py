"""Scikit-learn style estimators. ``TensorEM`` is the algorithm of Makkuva et al. (2019), derived and tested in
``book/makkuva2019.ipynb``: regressors by the cubic/quadratic output transforms and the tensor power method, then
the gating by EM with the regressors held fixed."""

from __future__ import annotations

import numpy as np
import torch

from moetheory import tensor
from moetheory.checks import check_choice, check_float, check_int
from moetheory.data.gated_moe import NONLINEARITIES, link
from moetheory.gated_em import gating_em

__all__ = ["TensorEM"]


def check_xy(X, y) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (n, d) and ``y`` (n,) as finite float arrays of matching length."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array (n_samples, n_features); got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must be a 1-d array of length n_samples={X.shape[0]}; got shape {y.shape}")
    for name, arr in (("X", X), ("y", y)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return X, y


class TensorEM:
    """Consistent estimator of a gated mixture of k experts, y = g(a_z^T x) + noise, z ~ softmax(W x), x ~ N(0, I).

    Parameters
    ----------
    n_experts : int >= 2, at most the input dimension.
    nonlinearity : "linear", "sigmoid" or "relu" (the expert link g).
    noise_std : the known noise level sigma > 0.
    random_state : int, None or numpy Generator; seeds the power method's restarts and the gating EM start.
    n_restarts, n_power_iter : tensor power method restarts and iterations per component.
    max_iter, tol : gating EM iterations and relative tolerance on W.

    Attributes
    ----------
    regressors_ : (k, d) unit vectors a_i.  gating_ : (k, d), last row zero.  mixing_ : (k,) E[softmax_i(W x)]
    implied by the tensor eigenvalues.  n_iter_ : gating EM iterations.
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

    def _validate(self, X, y):
        X, y = check_xy(X, y)
        k = check_int("n_experts", self.n_experts, 2)
        if k > X.shape[1]:
            raise ValueError(f"n_experts must be <= n_features={X.shape[1]} (the regressors must be linearly "
                             f"independent); got {k}")
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        check_float("noise_std", self.noise_std, 0.0, low_open=True)
        check_int("n_restarts", self.n_restarts, 1)
        check_int("n_power_iter", self.n_power_iter, 1)
        check_int("max_iter", self.max_iter, 1)
        check_float("tol", self.tol, 0.0)
        if X.shape[0] < 2 * X.shape[1]:
            raise ValueError(f"X must have at least 2 * n_features = {2 * X.shape[1]} samples; got {X.shape[0]}")
        return X, y

    def fit(self, X, y):
        """Estimate the regressors by the tensor method, then the gating by EM; returns ``self``."""
        X, y = self._validate(X, y)
        rng = np.random.default_rng(self.random_state)
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        k, d = self.n_experts, X.shape[1]
        x_t, y_t = torch.from_numpy(X)[None], torch.from_numpy(y)[None]
        est = tensor.estimate_regressors(x_t, y_t, k, self.nonlinearity, self.noise_std,
                                         n_restarts=self.n_restarts, n_iter=self.n_power_iter, generator=gen)
        w0 = torch.randn(1, k, d, generator=gen, dtype=torch.float64) / np.sqrt(d)
        w0[:, -1] = 0.0
        w, n_iter = gating_em(x_t, y_t, est["regressors"], w0, self.nonlinearity, float(self.noise_std),
                              max_iter=self.max_iter, tol=self.tol)
        self.regressors_ = est["regressors"][0].numpy()
        self.mixing_ = est["mixing"][0].numpy()
        self.gating_ = w[0].numpy()
        self.n_iter_ = int(n_iter[0])
        self.n_features_in_ = d
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Gating probabilities softmax(W x): ``(n, k)``."""
        X = self._check_fitted(X)
        logits = X @ self.gating_.T
        p = np.exp(logits - logits.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """The conditional mean E[y | x] = sum_i softmax_i(W x) g(a_i^T x): ``(n,)``."""
        X = self._check_fitted(X)
        g = link(self.nonlinearity)(torch.from_numpy(X @ self.regressors_.T)).numpy()
        return (self.predict_proba(X) * g).sum(1)

    def _check_fitted(self, X) -> np.ndarray:
        if not hasattr(self, "regressors_"):
            raise ValueError("this TensorEM is not fitted yet; call fit(X, y) first")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n_samples, {self.n_features_in_}); got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X must contain only finite values (no NaN or inf)")
        return X
