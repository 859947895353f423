"""Run a registered paper's experiment at a scale and collect its claims with provenance.

Used by ``moetheory reproduce`` and by the ledger chapter; results files are ``results/<paper>-<scale>.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from moetheory import papers, runtime
from moetheory.ledger import Claim, Ledger

RESULTS_DIR = runtime.REPO_ROOT / "results"


@dataclass
class Report:
    """The outcome of one reproduction: claims plus everything needed to say how they were obtained."""

    paper: str
    scale: str
    device: str
    elapsed_s: float
    versions: dict
    git_revision: str
    config: dict
    claims: Ledger
    metrics: dict = field(default_factory=dict)
    dtype: str = "float32"  # the floating type it computed in (records made before this field: float32)

    def to_json(self) -> dict:
        return {
            "paper": self.paper,
            "scale": self.scale,
            "device": self.device,
            "dtype": self.dtype,
            "elapsed_s": round(self.elapsed_s, 2),
            "versions": self.versions,
            "git_revision": self.git_revision,
            "config": self.config,
            "claims": self.claims.to_json(),
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, data: dict) -> Report:
        claims = Ledger(Claim.from_dict(c) for c in data["claims"])
        keys = ("paper", "scale", "device", "elapsed_s", "versions", "git_revision", "config")
        return cls(**{k: data[k] for k in keys}, claims=claims, metrics=data.get("metrics", {}),
                   dtype=data.get("dtype", "float32"))

    def write(self, out_dir: str | Path = RESULTS_DIR) -> Path:
        """Write ``<out_dir>/<paper>-<scale>.json`` atomically; returns the path."""
        return runtime.write_json_atomic(Path(out_dir) / f"{self.paper}-{self.scale}.json", self.to_json())


def prepare(name: str, scale: str, device: str = "auto", overrides: dict | None = None):
    """Validate everything a run needs before any work starts: (paper, config, torch.device)."""
    paper = papers.get(name)
    runtime.check_scale(scale)
    config = paper.config(scale)
    if overrides:
        config = runtime.replace_config(config, **overrides)
    return paper, config, runtime.resolve_device(device)


def reproduce(name: str, scale: str = "quick", device: str = "auto", *, progress: bool = False,
              overrides: dict | None = None) -> Report:
    """Run paper ``name`` at ``scale`` on ``device`` and return its :class:`Report`.

    The git revision is read when the run starts: the code that ran, whatever changes while it runs.
    """
    paper, config, dev = prepare(name, scale, device, overrides)
    revision = runtime.git_revision()
    start = time.perf_counter()
    with runtime.precision(dev):
        result = paper.run(config, device=dev, progress=progress)
    elapsed = time.perf_counter() - start
    return Report(
        paper=paper.name,
        scale=scale,
        device=runtime.device_description(dev),
        elapsed_s=elapsed,
        versions=runtime.versions(),
        git_revision=revision,
        config=runtime.config_dict(config),
        claims=Ledger(paper.claims(result)),
        metrics=result.metrics(),
        dtype=str(runtime.compute_dtype(dev)).removeprefix("torch."),
    )


def load_report(name: str, scale: str, results_dir: str | Path = RESULTS_DIR) -> Report | None:
    """The recorded report ``results/<name>-<scale>.json``, or ``None`` when it has not been produced."""
    path = Path(results_dir) / f"{name}-{scale}.json"
    if not path.exists():
        return None
    return Report.from_json(json.loads(path.read_text()))


def claims_table(name: str, results_dir: str | Path = RESULTS_DIR):
    """One row per claim of paper ``name``: the paper's value beside ours at quick and at paper scale.

    Reads the recorded reports ``results/<name>-quick.json`` and ``results/<name>-paper.json``; a scale that has
    not been recorded shows "not run".
    """
    import pandas as pd

    from moetheory.ledger import fmt

    reports = {scale: load_report(name, scale, results_dir) for scale in ("quick", "paper")}
    ids, rows = [], {}
    for scale, report in reports.items():
        for claim in report.claims if report else ():
            if claim.id not in rows:
                ids.append(claim.id)
                rows[claim.id] = {"statement": claim.statement, "paper": fmt(claim.paper_value),
                                  "source": claim.source, "criterion": claim.criterion}
            rows[claim.id][f"ours ({scale})"] = fmt(claim.reproduced)
            rows[claim.id][f"holds ({scale})"] = claim.holds
    columns = ["statement", "paper", "ours (quick)", "holds (quick)", "ours (paper)", "holds (paper)", "criterion",
               "source"]
    table = pd.DataFrame([rows[i] for i in ids], index=pd.Index(ids, name="claim"), columns=columns)
    return table.fillna("not run")


def summary_table(results_dir: str | Path = RESULTS_DIR):
    """Per registered paper: how many claims hold in the recorded quick and paper-scale runs."""
    import pandas as pd

    rows = []
    for name in papers.registry():
        row = {"paper": name}
        for scale in ("quick", "paper"):
            report = load_report(name, scale, results_dir)
            row[f"{scale} scale"] = (f"{sum(c.holds is True for c in report.claims)} of {len(report.claims)} hold"
                          if report else "not run")
        rows.append(row)
    return pd.DataFrame(rows, columns=["paper", "quick scale", "paper scale"]).set_index("paper")
