"""Theorem 4.1 of Chen et al. (2022) checked by construction (the chen2022 chapter, section on the symmetry).

What the paper says (as third-party summaries give it; the paper's text was not read): when
``D_alpha = D_gamma``, every model of the form ``F(x) = sum_p f(x^(p))`` errs on at least 1/8 of the test
distribution. What is ours:

- :func:`coupled_mixed_examples` builds the four "mixed-sign" examples of the proof's symmetry argument for a pair
  of clusters; for any additive ``F`` their signed margins sum to exactly zero (so one of them is misclassified);
- :func:`cluster_rule_margin` is a *non-additive* rule (it reads the cluster from the center patch, then the sign
  of that cluster's feature): a positive control that must beat the 87.5 % bound on the same data, since the
  bound holds only for additive models.
"""

from __future__ import annotations

import torch

from moetheory.checks import check_int


def cluster_rule_margin(x: torch.Tensor, features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Margin ``(n,)`` of the non-additive rule on ``x`` ``(n, P, d)``: with ``s = sum_p x_p``, the cluster is
    ``k(x) = argmax_k <s, c_k>`` (the center patch ``beta c_k``, beta > 0, is the only patch along ``c_k``) and the
    margin is ``<s, v_k(x)>`` (the feature signal ``y alpha v_k``; the feature noise lies along another
    ``v_k'``). Class 1 (``y = +1``) when positive. It depends on ``x`` through ``k(x)``, so it is no
    ``sum_p f(x_p)``."""
    s = x.sum(-2)  # (n, d)
    k = (s @ centers.T).argmax(-1)  # (n,)
    return (s * features[k]).sum(-1)


def rule_accuracy(data) -> float:
    """Test accuracy (%) of :func:`cluster_rule_margin` on a :class:`~moetheory.data.ChenClusters`."""
    margin = cluster_rule_margin(data.test_x, data.features, data.centers)
    return float(((margin > 0).long() == data.test_y).double().mean() * 100)


def coupled_mixed_examples(features: torch.Tensor, centers: torch.Tensor, k: int, k2: int, a: float, b: float,
                           beta: float, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The four mixed-sign examples ``(4, 4, d)`` and labels ``(4,)`` (0/1) of clusters ``k != k2`` (ours,
    following the proof's symmetry argument). Each holds the patches ``(s a v_k, t b v_k2, beta c, noise)``:

    ====  ========  ==========  =======  =====
    row   cluster   s, t        center   label
    ====  ========  ==========  =======  =====
    0     k         +1, -1      c_k      1 (signal +a v_k)
    1     k         -1, +1      c_k      0 (signal -a v_k)
    2     k2        +1, -1      c_k2     0 (signal -b v_k2)
    3     k2        -1, +1      c_k2     1 (signal +b v_k2)
    ====  ========  ==========  =======  =====

    For ``F = sum_p f(x_p)`` write ``u = f(. v_k)``, ``w = f(. v_k2)``: the signed margins are
    ``u(a) + w(-b) + C_k``, ``-(u(-a) + w(b) + C_k)``, ``-(u(a) + w(-b) + C_k2)``, ``u(-a) + w(b) + C_k2``; they sum
    to zero. ``a`` and ``b`` are the signal and noise strengths in the data's scale (x 10 in the official data).
    """
    n_clusters = features.shape[0]
    check_int("k", k, 0, n_clusters - 1)
    check_int("k2", k2, 0, n_clusters - 1)
    if k == k2:
        raise ValueError(f"k2 must differ from k (two clusters); got k = k2 = {k}")
    rows = []
    for s, t, center in ((1, -1, k), (-1, 1, k), (1, -1, k2), (-1, 1, k2)):
        rows.append(torch.stack([s * a * features[k], t * b * features[k2], beta * centers[center], noise]))
    labels = torch.tensor([1, 0, 0, 1])
    return torch.stack(rows), labels


def signed_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(..., n)`` margins of the true class, ``logit_y - logit_{1-y}``, from two-class logits ``(..., n, 2)``."""
    diff = logits[..., 1] - logits[..., 0]
    return torch.where(labels.bool(), diff, -diff)
