"""Clusters of single-index models (Kawata et al. 2025; the ``kawata2025`` chapter).

Cluster ``c ~ Unif{1..C}``, input ``x ~ N(rho v_c, I_d)``, label
``y = f*_c(<w_c, x>) + s_c g*(<w_g, x>) + nu``, ``nu ~ N(0, noise_std^2)``, with links given by their Hermite
coefficients in the orthonormal basis ``h_k = He_k / sqrt(k!)``, ``sum_c s_c = 0``, and the directions
``w_1..w_C, w_g`` orthonormal and orthogonal to the cluster means ``v_c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moetheory.checks import check_choice, check_float, check_int
from moetheory.hermite import hermite_series

__all__ = [
    "ClusterSingleIndex", "check_geometry", "make_cluster_problem", "hermite_series", "sample_clusters", "MEAN_LAYOUTS",
]

MEAN_LAYOUTS = ("antipodal", "orthogonal")  # v_2 = -v_1 (C = 2 only) / v_c orthonormal


def _exponent(coeffs) -> int:
    nonzero = [k for k, c in enumerate(coeffs) if k >= 1 and c != 0]
    return nonzero[0] if nonzero else 0


@dataclass(frozen=True)
class ClusterSingleIndex:
    """One problem instance. Directions are float64 numpy arrays; ``means`` are unit vectors."""

    means: np.ndarray  # (C, d) unit cluster means v_c
    local_dirs: np.ndarray  # (C, d) w_c
    global_dir: np.ndarray  # (d,) w_g
    rho: float  # mean shift: x ~ N(rho v_c, I)
    local_coeffs: tuple  # (C,) tuples of Hermite coefficients of f*_c (in h_k)
    global_coeffs: tuple  # Hermite coefficients of g*
    s: tuple  # (C,) weights of the global task, summing to zero
    noise_std: float  # zeta

    def __post_init__(self):
        means, local, wg = (
            np.asarray(a, dtype=float) for a in (self.means, self.local_dirs, self.global_dir)
        )
        if means.ndim != 2:
            raise ValueError(f"means must be (C, d); got shape {means.shape}")
        n_clusters, d = means.shape
        check_int("number of clusters C", n_clusters, 2, d)
        if local.shape != (n_clusters, d) or wg.shape != (d,):
            raise ValueError(
                f"local_dirs must be (C, d) = {(n_clusters, d)} and global_dir (d,); "
                f"got {local.shape} and {wg.shape}"
            )
        if not np.allclose(np.linalg.norm(means, axis=1), 1.0, atol=1e-8):
            raise ValueError("means must be unit vectors")
        dirs = np.vstack([local, wg])
        if not np.allclose(dirs @ dirs.T, np.eye(n_clusters + 1), atol=1e-8):
            raise ValueError("local_dirs and global_dir must be orthonormal")
        if np.abs(dirs @ means.T).max() > 1e-8:
            raise ValueError("local_dirs and global_dir must be orthogonal to the cluster means")
        check_float("rho", self.rho, 0.0)
        check_float("noise_std", self.noise_std, 0.0)
        if len(self.s) != n_clusters:
            raise ValueError(f"s must have one weight per cluster ({n_clusters}); got {len(self.s)}")
        if abs(sum(self.s)) > 1e-9:
            raise ValueError(f"s must sum to zero (sum_c s_c = 0); got sum {sum(self.s)}")
        if len(self.local_coeffs) != n_clusters:
            raise ValueError(
                f"local_coeffs must have one link per cluster ({n_clusters}); got {len(self.local_coeffs)}"
            )
        for name, coeffs in [
            *((f"local_coeffs[{c}]", f) for c, f in enumerate(self.local_coeffs)),
            ("global_coeffs", self.global_coeffs),
        ]:
            k = _exponent(coeffs)
            if k <= 2:
                raise ValueError(
                    f"{name}: the information exponent k* must be > 2 (c_1 = c_2 = 0 and some "
                    f"c_k != 0, k >= 3); got k* = {k} from {tuple(coeffs)}"
                )

    @property
    def n_clusters(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def label_variance(self) -> float:
        """Var y, exactly: <w_c, x> and <w_g, x> are independent N(0, 1) in every cluster (both directions are
        orthogonal to the means), so E[h_i h_j] = delta_ij gives E[y^2 | c] = (beta_c0 + s_c gamma_0)^2
        + sum_{i>=1} beta_ci^2 + s_c^2 sum_{i>=1} gamma_i^2 + zeta^2, averaged over the uniform cluster."""
        gamma = np.asarray(self.global_coeffs, dtype=float)
        mean_c, square_c = [], []
        for beta, s in zip(self.local_coeffs, self.s, strict=True):
            beta = np.asarray(beta, dtype=float)
            mean_c.append((beta[0] if beta.size else 0.0) + s * (gamma[0] if gamma.size else 0.0))
            square_c.append(mean_c[-1] ** 2 + (beta[1:] ** 2).sum() + s**2 * (gamma[1:] ** 2).sum())
        return float(np.mean(square_c) - np.mean(mean_c) ** 2 + self.noise_std**2)

    @property
    def k_star(self) -> int:
        """The smallest information exponent among the links."""
        return min(_exponent(c) for c in (*self.local_coeffs, self.global_coeffs))


def check_geometry(d: int, n_clusters: int, layout: str) -> int:
    """Validate that ``n_clusters`` clusters with ``layout`` means fit in R^d (without drawing anything); returns
    the number of orthonormal directions they need (the means, one w_c per cluster, and w_g)."""
    d = check_int("d", d, 1)
    n_clusters = check_int("n_clusters", n_clusters, 2, d)
    check_choice("layout", layout, MEAN_LAYOUTS)
    if layout == "antipodal" and n_clusters != 2:
        raise ValueError(f"layout='antipodal' needs n_clusters = 2; got {n_clusters}")
    need = (1 if layout == "antipodal" else n_clusters) + n_clusters + 1
    if need > d:
        raise ValueError(f"d must be >= {need} for {n_clusters} clusters with layout={layout!r}; got d = {d}")
    return need


def make_cluster_problem(
    d: int,
    n_clusters: int = 2,
    *,
    rho: float = 3.0,
    layout: str = "antipodal",
    local_coeffs=(0, 0, 0, 1),
    global_coeffs=(0, 0, 0, 1),
    s=None,
    noise_std: float = 0.1,
    seed: int = 0,
) -> ClusterSingleIndex:
    """A random instance: orthonormal directions from a QR of a Gaussian matrix (deterministic for ``seed``).

    ``layout="antipodal"`` (C = 2): v_2 = -v_1; ``"orthogonal"``: v_c orthonormal. ``s`` defaults to
    alternating +1, -1 (C even) or (1, ..., 1, -(C - 1)) (C odd). One link ``local_coeffs`` is shared by the
    clusters unless a tuple of C tuples is passed.
    """
    need = check_geometry(d, n_clusters, layout)
    n_means = 1 if layout == "antipodal" else n_clusters
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, need)))
    q = q.T  # (need, d) orthonormal rows
    means = np.vstack([q[0], -q[0]]) if layout == "antipodal" else q[:n_clusters]
    local = q[n_means : n_means + n_clusters]
    if s is None:
        s = (
            [(-1.0) ** c for c in range(n_clusters)]
            if n_clusters % 2 == 0
            else [1.0] * (n_clusters - 1) + [-(n_clusters - 1.0)]
        )
    if local_coeffs and not isinstance(local_coeffs[0], (tuple, list)):
        local_coeffs = (tuple(local_coeffs),) * n_clusters
    return ClusterSingleIndex(
        means=means,
        local_dirs=local,
        global_dir=q[-1],
        rho=rho,
        local_coeffs=tuple(tuple(c) for c in local_coeffs),
        global_coeffs=tuple(global_coeffs),
        s=tuple(float(v) for v in s),
        noise_std=noise_std,
    )


def sample_clusters(
    problem: ClusterSingleIndex,
    n: int,
    n_seeds: int = 1,
    *,
    generator=None,
    device="cpu",
    dtype=None,
):
    """``x (S, n, d)``, ``y (S, n)``, ``cluster (S, n)`` for ``S = n_seeds`` independent streams."""
    n, n_seeds = check_int("n", n, 1), check_int("n_seeds", n_seeds, 1)
    kw = dict(device=device, dtype=dtype or torch.get_default_dtype())
    tensors = {k: torch.as_tensor(getattr(problem, k), **kw) for k in ("means", "local_dirs", "global_dir")}
    cluster = torch.randint(problem.n_clusters, (n_seeds, n), generator=generator, device=device)
    x = (
        torch.randn(n_seeds, n, problem.dim, generator=generator, **kw)
        + problem.rho * tensors["means"][cluster]
    )
    local = x @ tensors["local_dirs"].T  # (S, n, C)
    y = torch.zeros(n_seeds, n, **kw)
    for c, coeffs in enumerate(problem.local_coeffs):  # C links (a handful), each on all rows
        y = y + torch.where(cluster == c, hermite_series(local[..., c], coeffs), 0.0)
    s = torch.as_tensor(problem.s, **kw)[cluster]
    y = y + s * hermite_series(x @ tensors["global_dir"], problem.global_coeffs)
    y = y + problem.noise_std * torch.randn(n_seeds, n, generator=generator, **kw)
    return x, y, cluster
