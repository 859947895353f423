"""Scikit-learn estimators. ``TensorEM`` is the algorithm of Makkuva et al. (2019), derived and tested in
``book/makkuva2019.ipynb``: regressors by the cubic/quadratic output transforms and the tensor power method, then
the gating by EM with the regressors held fixed."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from moetheory.checks import check_choice, check_float, check_int
from moetheory.papers.makkuva2019 import moments
from moetheory.papers.makkuva2019.gated_em import gating_em, gating_scale_em
from moetheory.papers.makkuva2019.gated_moe import NONLINEARITIES, link

__all__ = ["TensorEM"]

NORM_CHECK_Z = 5.0  # warn when mean(y^2) is this many standard errors from the unit-norm model's E[y^2]


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
    R^2 of ``predict``. It needs n_features > n_experts (the gating rows are orthogonal to the k regressors: with
    k = d there is no room for them) and n_samples >= 2 n_features, and is consistent only under the model's
    assumptions (standard Gaussian inputs, the known noise level, unit-norm regressors): on other data the fit is
    defined but carries no guarantee.

    **Regressor norms.** The transform constants, and the gating EM's likelihood, assume ||a_i|| = 1; the tensor
    method returns directions only. By default (``fit_scale=False``) the regressors are unit vectors and ``fit``
    checks the assumption: when the mean of y^2 is more than :data:`NORM_CHECK_Z` standard errors from E[y^2]
    under the model with unit-norm regressors (:func:`moments.output_second_moment`), it warns (``UserWarning``);
    the fit itself is unchanged. With ``fit_scale=True`` the gating EM also fits one scale s_i per expert,
    a_i = s_i u_i with the tensor method's direction u_i held fixed (:func:`gated_em.gating_scale_em`). For
    linear experts the tensor step does not depend on the norms (the terms they add to the moments lie in the span
    of the gating rows, which whitening removes), so directions, scales and ``mixing_`` stay consistent whatever
    the norms; for sigmoid and ReLU experts the constants themselves assume unit norms, the directions are biased
    when the norms differ from 1, and ``fit`` still warns.

    Parameters
    ----------
    n_experts : int >= 2, at most the input dimension.
    nonlinearity : "linear", "sigmoid" or "relu" (the expert link g).
    noise_std : the known noise level sigma > 0.
    random_state : int, None, numpy Generator or RandomState; seeds the power method's restarts and the gating EM
        start.
    n_restarts, n_power_iter : tensor power method restarts and iterations per component.
    max_iter, tol : gating EM iterations and relative tolerance on W.
    fit_scale : bool, default False; fit each expert's scale ||a_i|| in the gating EM (see above).

    Attributes
    ----------
    regressors_ : (k, d) regressors a_i (unit vectors unless ``fit_scale``).  scales_ : (k,) their norms (ones
    unless ``fit_scale``).  gating_ : (k, d), last row zero.  mixing_ : (k,) E[softmax_i(W x)] implied by the
    tensor eigenvalues.  n_iter_ : gating EM iterations.  n_features_in_ : d.
    feature_names_in_ : the column names, when X had string column names.
    """

    def __init__(self, n_experts=2, nonlinearity="linear", noise_std=0.1, random_state=None, *, n_restarts=10,
                 n_power_iter=30, max_iter=200, tol=1e-6, fit_scale=False):
        self.n_experts = n_experts
        self.nonlinearity = nonlinearity
        self.noise_std = noise_std
        self.random_state = random_state
        self.n_restarts = n_restarts
        self.n_power_iter = n_power_iter
        self.max_iter = max_iter
        self.tol = tol
        self.fit_scale = fit_scale

    def _validate(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """The parameters, then ``X`` (n, d) and ``y`` (n,) as finite float64 arrays with n >= 2 d and d > k."""
        k = check_int("n_experts", self.n_experts, 2)
        check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        check_float("noise_std", self.noise_std, 0.0, low_open=True)
        check_int("n_restarts", self.n_restarts, 1)
        check_int("n_power_iter", self.n_power_iter, 1)
        check_int("max_iter", self.max_iter, 1)
        check_float("tol", self.tol, 0.0)
        if not isinstance(self.fit_scale, (bool, np.bool_)):
            raise ValueError(f"fit_scale must be True or False; got {self.fit_scale!r}")
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)  # finite, 2-d X, 1-d y, same n
        y = np.asarray(y, dtype=np.float64)
        n, d = X.shape
        if k >= d:
            raise ValueError(f"n_experts must be in [2, n_features - 1] = [2, {d - 1}] (gating orthogonal to the "
                             f"regressors needs n_experts < n_features); got n_experts={k}, n_features={d}")
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
        args = (x_t, y_t, est["regressors"], w0, self.nonlinearity, float(self.noise_std))
        if self.fit_scale:
            w, scale, n_iter = gating_scale_em(*args, max_iter=self.max_iter, tol=self.tol)
            self.scales_ = scale[0].numpy()
        else:
            w, n_iter = gating_em(*args, max_iter=self.max_iter, tol=self.tol)
            self.scales_ = np.ones(k)
        if not self.fit_scale or self.nonlinearity != "linear":
            self._check_norms(y)
        self.regressors_ = est["regressors"][0].numpy() * self.scales_[:, None]
        self.mixing_ = est["mixing"][0].numpy()
        self.gating_ = w[0].numpy()
        self.n_iter_ = int(n_iter[0])
        return self

    def _check_norms(self, y: np.ndarray) -> None:
        """Warn when mean(y^2) contradicts the unit-norm model's E[y^2] by more than NORM_CHECK_Z standard errors."""
        y2 = y**2
        expected = moments.output_second_moment(self.nonlinearity, float(self.noise_std))
        z = abs(y2.mean() - expected) / max(y2.std(ddof=1) / np.sqrt(len(y2)), 1e-300)
        if z > NORM_CHECK_Z:
            hint = "; pass fit_scale=True to fit the norms" if self.nonlinearity == "linear" else ""
            warnings.warn(f"TensorEM assumes unit-norm regressors: mean(y^2) = {y2.mean():.4g}, but the model with "
                          f"||a_i|| = 1 and noise_std={self.noise_std} implies {expected:.4g} ({z:.0f} standard "
                          f"errors away): the norms, noise_std or the model are wrong{hint}", UserWarning,
                          stacklevel=3)

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
