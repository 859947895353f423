"""Estimators with scikit-learn's interface, importable from one place (the public contract of the book).

:class:`TensorEM` (Makkuva et al. 2019: the tensor method, then EM for the gating) lives with its paper in
:mod:`moetheory.papers.makkuva2019.estimator`.
"""

from moetheory.papers.makkuva2019.estimator import TensorEM

__all__ = ["TensorEM"]
