"""Chen et al. (2022), Definition 3.1: patch data with cluster structure (the chen2022 chapter).

Each example has ``P = 4`` patches in ``R^d`` (``d = 50``) and belongs to one of ``K = 4`` clusters. With
orthonormal features ``v_k`` and cluster centers ``c_k`` (all ``2K`` mutually orthogonal), an example of cluster
``k`` with label ``y = +-1`` holds, in a random order,

- the feature signal ``y * alpha * v_k``,
- the cluster-center signal ``beta * c_k``,
- the feature noise ``eps * gamma * v_k'`` for a random other cluster ``k'`` and a random sign ``eps``,
- ``P - 3`` Gaussian noise patches ``N(0, sigma_p^2 I)``.

The generator follows the official notebooks (uclaml/MoE): the same random draws in the same order from numpy's
legacy ``RandomState`` and torch's CPU generator, both seeded with the official data seed, so the data match the
published sets up to float rounding; inputs are multiplied by 10 and labels mapped to ``{0, 1}`` as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from moetheory.checks import check_choice, check_float, check_int

__all__ = ["CHEN_SETTINGS", "ChenClusters", "ChenSetting", "make_chen_clusters"]


@dataclass(frozen=True)
class ChenSetting:
    """One data setting: official data seed, the uniform ranges of alpha, beta, gamma, and the noise std."""

    seed: int  # torch.manual_seed / np.random.seed of the official generator notebook
    alpha: tuple[float, float]  # feature-signal strength ~ U(alpha)
    beta: tuple[float, float]  # cluster-center strength ~ U(beta)
    gamma: tuple[float, float]  # feature-noise strength ~ U(gamma)
    noise_std: float  # std of each coordinate of the Gaussian noise patch (sigma_p / sqrt(d) with d = 50)


CHEN_SETTINGS = {
    "S1": ChenSetting(12, (0.5, 2.0), (1.0, 2.0), (0.5, 3.0), 1 / math.sqrt(50)),
    "S2": ChenSetting(11, (0.5, 2.0), (1.0, 2.0), (0.5, 3.0), 2 / math.sqrt(50)),
    "S3": ChenSetting(11, (0.5, 2.0), (1.0, 2.0), (0.5, 2.0), 1 / math.sqrt(50)),
    "S4": ChenSetting(11, (0.5, 2.0), (1.0, 2.0), (0.5, 2.0), 2 / math.sqrt(50)),
    # D_alpha = D_gamma: the hypothesis of Theorem 4.1 (single models cannot beat 87.5%)
    "verify": ChenSetting(11, (1.0, 2.0), (1.0, 2.0), (1.0, 2.0), 1 / math.sqrt(50)),
}
"""The official settings S1-S4 of Table 1 and the "verify" data of Theorem 4.1."""


@dataclass(frozen=True)
class ChenClusters:
    """Train and test sets of one setting. Inputs ``(n, P, d)`` (already x ``scale``): the official float32 values,
    held in the default floating type (float64 under :func:`moetheory.runtime.setup` on the CPU)."""

    setting: str
    train_x: torch.Tensor  # (n_train, P, d)
    train_y: torch.Tensor  # (n_train,) long in {0, 1} (0 is y = -1)
    train_cluster: torch.Tensor  # (n_train,) long in [0, K)
    test_x: torch.Tensor  # (n_test, P, d)
    test_y: torch.Tensor  # (n_test,)
    test_cluster: torch.Tensor  # (n_test,)
    features: torch.Tensor  # (K, d) unit feature vectors v_k
    centers: torch.Tensor  # (K, d) unit cluster centers c_k

    def to(self, device) -> ChenClusters:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return ChenClusters(**moved)


def _orthonormal(rng: np.random.RandomState, count: int, d: int) -> np.ndarray:
    """``count`` orthonormal vectors by sequential (modified) Gram-Schmidt of normalised Gaussian draws."""
    basis: list[np.ndarray] = []
    for _ in range(count):
        x = rng.randn(d)
        x /= np.linalg.norm(x)
        for prev in basis:
            x -= x.dot(prev) * prev
        x /= np.linalg.norm(x)
        basis.append(x)
    return np.stack(basis)


@lru_cache(maxsize=8)
def _generate(setting: str, n_total: int, n_clusters: int, n_patches: int, dim: int, scale: float):
    spec = CHEN_SETTINGS[setting]
    rng = np.random.RandomState(spec.seed)
    perm_gen = torch.Generator().manual_seed(spec.seed)
    basis = torch.from_numpy(_orthonormal(rng, 2 * n_clusters, dim)).float()  # stored in float32 as official
    features, centers = basis[:n_clusters], basis[n_clusters:]
    signs, cluster, noise_sign, other = (np.empty(n_total, dtype=np.int64) for _ in range(4))
    strength = np.empty((n_total, 3))
    noise = np.empty((n_total, n_patches - 3, dim))
    perms = torch.empty(n_total, n_patches, dtype=torch.long)
    for i in range(n_total):  # the official order of draws; one example at a time
        signs[i] = rng.choice([-1, 1], 1)[0]
        cluster[i] = rng.choice(list(range(n_clusters)))
        noise[i] = rng.normal(0, spec.noise_std, size=(n_patches - 3, dim))
        noise_sign[i] = rng.choice([-1, 1], 1)[0]
        other[i] = rng.choice(sorted(set(range(n_clusters)) - {int(cluster[i])}))
        strength[i] = (rng.uniform(*spec.alpha), rng.uniform(*spec.beta), rng.uniform(*spec.gamma))
        perms[i] = torch.randperm(n_patches, generator=perm_gen)
    s = torch.from_numpy(strength).float()
    k, k2 = torch.from_numpy(cluster), torch.from_numpy(other)
    patches = torch.cat([
        (features[k] * (torch.from_numpy(signs).float() * s[:, 0]).unsqueeze(1)).unsqueeze(1),  # y alpha v_k
        (centers[k] * s[:, 1:2]).unsqueeze(1),  # beta c_k
        torch.from_numpy(noise).float(),  # xi
        (features[k2] * (torch.from_numpy(noise_sign).float() * s[:, 2]).unsqueeze(1)).unsqueeze(1),  # eps gamma v_k'
    ], dim=1)  # (n, P, d) in the official pre-permutation order
    x = torch.gather(patches, 1, perms.unsqueeze(-1).expand_as(patches)) * scale
    y = torch.from_numpy((signs + 1) // 2)
    return x, y, k, features, centers


def make_chen_clusters(setting: str = "S1", n_train: int = 16000, n_test: int = 16000, *, n_clusters: int = 4,
                       n_patches: int = 4, dim: int = 50, scale: float = 10.0) -> ChenClusters:
    """The data of ``setting`` (``"S1"``-``"S4"`` or ``"verify"``), deterministic (official seeds).

    The first ``n_train`` draws form the training set and the next ``n_test`` the test set, as in the official
    notebooks (16,000 + 16,000). Smaller sizes give a prefix of the same stream. Results are cached.
    """
    check_choice("setting", setting, CHEN_SETTINGS)
    check_int("n_train", n_train, 1)
    check_int("n_test", n_test, 1)
    check_int("n_clusters", n_clusters, 2)
    check_int("n_patches", n_patches, 4)
    check_int("dim", dim, 2 * n_clusters)
    check_float("scale", scale, 0.0, low_open=True)
    x, y, k, features, centers = _generate(setting, n_train + n_test, n_clusters, n_patches, dim, float(scale))
    x, features, centers = (t.to(torch.get_default_dtype()) for t in (x, features, centers))  # exact: from float32
    return ChenClusters(setting, x[:n_train], y[:n_train], k[:n_train], x[n_train:], y[n_train:], k[n_train:],
                        features, centers)
