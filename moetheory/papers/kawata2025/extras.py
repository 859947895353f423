"""The variants and ablations of the ``kawata2025`` chapter (sections "Variants" and "Ablation: the old stage 1"),
run with the quick record (``Result.extras``, metrics ``variants``, ``ablation_runs`` and ``stage1_ablations``) so
that the chapter reads them (:func:`recorded_extras`) instead of re-running them. None of them enters a claim."""

from __future__ import annotations

from moetheory import runtime

__all__ = ["run_extras", "recorded_extras", "recorded_metrics", "EXTRA_KEYS"]

EXTRA_KEYS = ("variants", "ablation_runs", "stage1_ablations")  # the metrics that run_extras adds to a record


def run_extras(cfg, device="auto") -> dict:
    """The chapter's variants and ablations in the setting of ``cfg`` (a :class:`~.Config`), as JSON-ready metrics:

    - ``variants``: activation -> ``Result.metrics()`` of the main setting with that student (``cfg.variants``);
    - ``ablation_runs``: ``<name>-c<C>`` -> ``Result.metrics()`` of the full pipeline with one of
      :data:`~.ABLATIONS` (``cfg.ablation_runs`` at C = ``n_clusters``, ``cfg.cluster_ablation_runs`` at each C of
      ``more_clusters``, in :func:`~.cluster_config`);
    - ``stage1_ablations``: ``c<C>`` -> name -> ``(S, C)`` 0/1, stage 1 alone (:func:`~.train_stage1`,
      ``cfg.stage1_seeds`` seeds) recovering w_c (:func:`~.stage1_recovery`), for ``default`` and each
      ``cfg.stage1_ablations``, at C = ``n_clusters`` and each C of ``more_clusters``.

    Each setting is seeded on its own (as the chapter's runs were), so the order does not matter. ``{}`` when
    ``cfg`` names none of them."""
    from moetheory.papers.kawata2025 import ablation, cluster_config, stage1_recovery, train_stage1
    from moetheory.papers.kawata2025.pipeline import run_setting

    if not (cfg.variants or cfg.ablation_runs or cfg.cluster_ablation_runs or cfg.stage1_ablations):
        return {}
    dev = runtime.resolve_device(device)
    main = runtime.replace_config(cfg, more_clusters=(), separation_dims=())
    settings = {cfg.n_clusters: main, **{c: cluster_config(cfg, c) for c in cfg.more_clusters}}

    def full(c):
        return run_setting(c, dev, False).metrics()

    runs = {f"{name}-c{cfg.n_clusters}": full(ablation(main, name)) for name in cfg.ablation_runs}
    runs |= {f"{name}-c{c}": full(ablation(settings[c], name))
             for c in cfg.more_clusters for name in cfg.cluster_ablation_runs}

    def stage1(c, name):
        c = runtime.replace_config(c if name == "default" else ablation(c, name), n_seeds=cfg.stage1_seeds)
        return stage1_recovery(train_stage1(c, dev)).astype(int).tolist()

    return {
        "variants": {a: full(runtime.replace_config(main, activation=a)) for a in cfg.variants},
        "ablation_runs": runs,
        "stage1_ablations": {f"c{c}": {name: stage1(s, name) for name in ("default", *cfg.stage1_ablations)}
                             for c, s in settings.items()},
    }


def recorded_metrics(cfg, report, keys) -> dict | None:
    """``{key: report.metrics[key]}`` of a record ``report`` (:func:`moetheory.reproduce.recorded`) made with the
    config ``cfg``; ``None`` when there is no record, it was made with another config or it lacks a key."""
    from moetheory.runtime import config_dict

    if report is None or report.config != config_dict(cfg) or any(k not in report.metrics for k in keys):
        return None
    return {k: report.metrics[k] for k in keys}


def recorded_extras(cfg, report) -> dict | None:
    """The :func:`run_extras` metrics of a record made with ``cfg`` (``None``: not recorded with this config): the
    chapter reads them instead of re-running them."""
    return recorded_metrics(cfg, report, EXTRA_KEYS)
