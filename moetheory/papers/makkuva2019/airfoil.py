"""A real-data analogue for Makkuva et al. (2019): UCI Airfoil Self-Noise (Brooks, Pope & Marcolini 1989; loaded by
:func:`moetheory.datasets.load_airfoil`), shown in ``book/makkuva2019.ipynb``.

The paper cites these data (arXiv v1's references), so it has a real-data experiment, but its protocol could not be
read: everything here is ours. Per split: the five inputs are standardised and whitened on the training part
(scikit-learn's ``StandardScaler`` then ``PCA(whiten=True)``), the output is standardised with the training mean and
standard deviation, and the noise level every MoE fit assumes is the standard deviation of ordinary least squares'
training residuals (an upper bound on the MoE's: a mixture can only explain more). Test MSE, in units of the training
output variance, of: ordinary least squares; ``TensorEM`` (the paper's algorithm, expert norms fitted); ``TensorEM``
then joint EM; joint EM from random starts (the start with the highest training likelihood kept). The inputs are not
Gaussian, so the tensor method's guarantee does not apply: whether the MoE helps is an outcome.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from moetheory import datasets
from moetheory.checks import MAX_SEED, check_float, check_int
from moetheory.papers.makkuva2019.estimator import TensorEM
from moetheory.papers.makkuva2019.gated_em import joint_em, log_likelihood, random_start
from moetheory.papers.makkuva2019.gated_moe import link

METHODS = ("OLS", "TensorEM", "TensorEM -> joint EM", "joint EM (random starts)")


def moe_predict(x: np.ndarray, regressors: np.ndarray, gating: np.ndarray, nonlinearity: str = "linear"):
    """E[y | x] = sum_i softmax_i(W x) g(a_i^T x) for ``x (n, d)``, ``regressors`` and ``gating`` ``(k, d)``."""
    x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    gate = torch.softmax(x_t @ torch.from_numpy(gating).T, -1)
    return (gate * link(nonlinearity)(x_t @ torch.from_numpy(regressors).T)).sum(-1).numpy()


def _joint_em_best(x, y, a0, w0, noise_std, max_iter):
    """Joint EM from every start of ``a0, w0 (R, k, d)`` on one sample; the fit with the highest likelihood."""
    r = a0.shape[0]
    xs, ys = x.expand(r, *x.shape), y.expand(r, *y.shape)
    a, w, _ = joint_em(xs, ys, a0, w0, "linear", noise_std, max_iter=max_iter, tol=1e-6)
    best = int(torch.argmax(log_likelihood(xs, ys, a, w, "linear", noise_std)))
    return a[best].numpy(), w[best].numpy()


def split_scores(x, y, n_experts: int, seed: int, *, test_size: float = 0.25, n_starts: int = 5,
                 max_iter: int = 100) -> dict:
    """Test MSE / training Var(y) of every method in :data:`METHODS` on one train/test split (``seed``)."""
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed)
    white = make_pipeline(StandardScaler(), PCA(whiten=True)).fit(x_tr)
    x_tr, x_te = white.transform(x_tr), white.transform(x_te)
    mean, std = y_tr.mean(), y_tr.std()
    y_tr, y_te = (y_tr - mean) / std, (y_te - mean) / std
    ols = LinearRegression().fit(x_tr, y_tr)
    sigma = float(np.std(y_tr - ols.predict(x_tr), ddof=x_tr.shape[1] + 1))
    tem = TensorEM(n_experts, "linear", sigma, random_state=seed, fit_scale=True, max_iter=max_iter).fit(x_tr, y_tr)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    refined = _joint_em_best(xt, yt, torch.from_numpy(tem.regressors_)[None], torch.from_numpy(tem.gating_)[None],
                             sigma, max_iter)
    gen = torch.Generator().manual_seed(seed)
    a0, w0 = random_start(n_starts, n_experts, x_tr.shape[1], gen)
    random = _joint_em_best(xt, yt, a0, w0, sigma, max_iter)
    preds = {"OLS": ols.predict(x_te), "TensorEM": tem.predict(x_te),
             "TensorEM -> joint EM": moe_predict(x_te, *refined),
             "joint EM (random starts)": moe_predict(x_te, *random)}
    return {m: float(np.mean((p - y_te) ** 2)) for m, p in preds.items()} | {"noise_std": sigma}


def compare(n_splits: int = 10, n_experts: int = 3, *, test_size: float = 0.25, n_starts: int = 5, max_iter: int = 100,
            seed: int = 0, data_home=None, download: bool = True) -> list[dict]:
    """:func:`split_scores` on ``n_splits`` random splits (seeds ``seed``, ``seed + 1``, ...); one dict per split.
    ``max_iter``: iterations of every EM (on these data joint EM is still moving slowly after 100: a budget).
    The data come from :func:`moetheory.datasets.load_airfoil` (``$MOETHEORY_DATA``, the cache, or a download);
    without them it fails with the loader's one-line message."""
    check_int("n_splits", n_splits, 1)
    check_int("n_experts", n_experts, 2, 4)  # k < d = 5 inputs
    check_float("test_size", test_size, 0.05, 0.5)
    check_int("n_starts", n_starts, 1)
    check_int("max_iter", max_iter, 1)
    check_int("seed", seed, 0, MAX_SEED - n_splits)
    x, y = datasets.load_airfoil(data_home=data_home, download=download, return_X_y=True)
    return [{"split": s} | split_scores(x, y, n_experts, seed + s, test_size=test_size, n_starts=n_starts,
                                              max_iter=max_iter)
            for s in range(n_splits)]


def splits_or_none(n_splits: int, seed: int = 0) -> list | None:
    """:func:`compare` (its defaults) on ``n_splits`` splits, as a run records it; ``None`` when ``n_splits`` is 0, or
    (with one line saying why) when the data are not in ``$MOETHEORY_DATA`` or the cache (no download here)."""
    if not n_splits:
        return None
    try:
        return compare(n_splits, seed=seed, download=False)
    except datasets.DataNotFound as e:
        print(f"Airfoil analogue not run: {e}")
        return None
