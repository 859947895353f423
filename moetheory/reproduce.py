"""Run a registered paper's experiment at a scale and collect its claims with provenance.

Used by ``moetheory reproduce`` and by the ledger chapter; results files are ``results/<paper>-<scale>.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from moetheory import papers, runtime
from moetheory.ledger import Claim, Ledger

RESULTS_DIR = runtime.REPO_ROOT / "results"
GPU_RUNS_DIR = runtime.REPO_ROOT / "benchmarks" / "gpu-runs"  # make gpu-check's files, copied from a GPU machine

CONFIG_RENAMES = {  # paper -> {config field as records made before the rename spell it: its name now}
    "makkuva2019": {"seeds": "n_seeds"},  # one vocabulary for every paper: n_seeds
    "wang2025": {"seeds": "n_seeds"},
}
CONFIG_ADDED = {  # paper -> {config field added after records were made: the value the code hard-coded before}
    "wang2025": {
        "seed": 0,  # seed 0 draws exactly what the fixed seeds (data 1, steps 0-4, spiral 7) drew
        "exp1_embedding": "random",  # Experiment I's circle was always randomly embedded before the zero-pad arm
        "exp2_arms": [],  # no paper-literal combine-weight arms before they were added
    },
}
"""The legacy map: records in ``results/`` keep the field names they were made with (their values are never edited);
:func:`current_config` reads them in today's names, so that a record compares with today's presets."""


def current_config(paper: str, config: dict) -> dict:
    """A recorded ``config`` of ``paper`` in today's field names (:data:`CONFIG_RENAMES`), with the fields added
    since filled in with the value the code then used (:data:`CONFIG_ADDED`); the input is not changed."""
    renames = CONFIG_RENAMES.get(paper, {})
    out = {}
    for key, value in config.items():
        new = renames.get(key, key)
        if new in out or (new != key and new in config):
            raise ValueError(f"{paper} config holds both {key!r} and its new name {new!r}")
        out[new] = value
    for key, value in CONFIG_ADDED.get(paper, {}).items():
        out.setdefault(key, value)
    return out


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
    # CPU seconds of the process during the run (all its threads; None: made before this field): on a shared machine
    # the wall time says more about the load than the code, this does not
    cpu_s: float | None = None

    def to_json(self) -> dict:
        return {
            "paper": self.paper,
            "scale": self.scale,
            "device": self.device,
            "dtype": self.dtype,
            "elapsed_s": round(self.elapsed_s, 2),
            **({} if self.cpu_s is None else {"cpu_s": round(self.cpu_s, 2)}),
            "versions": self.versions,
            "git_revision": self.git_revision,
            "config": self.config,
            "claims": self.claims.to_json(),
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, data: dict) -> Report:
        """A report from its JSON record, its config in today's field names (:func:`current_config`); a record made
        before claims had a provenance gets its claims' ``provenance`` and ``source`` from the current code
        (:func:`with_provenance`), in memory only."""
        if any("provenance" not in c for c in data["claims"]):
            data = with_provenance(data)
        claims = Ledger(Claim.from_dict(c) for c in data["claims"])
        keys = ("paper", "scale", "device", "elapsed_s", "versions", "git_revision")
        return cls(**{k: data[k] for k in keys}, config=current_config(data["paper"], data["config"]),
                   claims=claims, metrics=data.get("metrics", {}), dtype=data.get("dtype", "float32"),
                   cpu_s=data.get("cpu_s"))

    def write(self, out_dir: str | Path = RESULTS_DIR) -> Path:
        """Write ``<out_dir>/<paper>-<scale>.json`` atomically; returns the path."""
        return runtime.write_json_atomic(Path(out_dir) / f"{self.paper}-{self.scale}.json", self.to_json())


def prepare(name: str, scale: str, device: str = "auto", overrides: dict | None = None):
    """Validate everything a run needs before any work starts: (paper, config, torch.device)."""
    paper = papers.get(name)
    if scale not in paper.scales:
        raise ValueError(f"scale must be one of {', '.join(map(repr, paper.scales))} for {name}; got {scale!r}")
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
    start, cpu_start = time.perf_counter(), time.process_time()
    with runtime.precision(dev):
        result = paper.run(config, device=dev, progress=progress)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return Report(
        paper=paper.name,
        scale=scale,
        device=runtime.device_description(dev),
        elapsed_s=elapsed,
        cpu_s=cpu,
        versions=runtime.versions(),
        git_revision=revision,
        config=runtime.config_dict(config),
        claims=Ledger(paper.claims(result)),
        metrics=result.metrics(),
        dtype=str(runtime.compute_dtype(dev)).removeprefix("torch."),
    )


def results_dirs() -> list[Path]:
    """Where recorded runs are looked for, in order: ``$MOETHEORY_RESULTS``, the clone's ``results/`` (an editable
    install), and ``results/`` beside or above the working directory (a notebook run from ``book/`` of a clone with
    the package installed from it)."""
    found = [Path(os.environ["MOETHEORY_RESULTS"])] if os.environ.get("MOETHEORY_RESULTS") else []
    found += [RESULTS_DIR, Path.cwd() / "results", Path.cwd().parent / "results"]
    return list(dict.fromkeys(p.resolve() for p in found))


def load_report(name: str, scale: str, results_dir: str | Path | None = RESULTS_DIR) -> Report | None:
    """The recorded report ``<results_dir>/<name>-<scale>.json`` (``results_dir=None``: the first of
    :func:`results_dirs` that has it), or ``None`` when it has not been produced."""
    candidates = results_dirs() if results_dir is None else [Path(results_dir)]
    for directory in candidates:
        path = directory / f"{name}-{scale}.json"
        if path.exists():
            return Report.from_json(json.loads(path.read_text()))
    return None


def recorded(name: str, scale: str) -> Report | None:
    """What a chapter reads: the recorded ``scale`` run of ``name`` wherever :func:`results_dirs` finds it. A chapter
    downloaded alone has none: this then prints one line saying what is missing and how to get it, and returns
    ``None`` (the chapter shows those values as "not run")."""
    report = load_report(name, scale, None)
    if report is None:
        print(f"No recorded {scale}-scale run of {name} ({name}-{scale}.json) was found, so its values show as "
              f"'not run'. Set MOETHEORY_RESULTS to the results/ folder of the book's repository, or record it: "
              f"moetheory reproduce {name} --scale {scale} --out results")
    return report


def gpu_run(name: str, scale: str, folder: str | Path = GPU_RUNS_DIR) -> dict | None:
    """The latest finished ``make gpu-check`` run of ``name`` at ``scale`` kept under ``folder``
    (``<date>/*.json``): that run's entry (``claims``, ``metrics``, ``config``, ``elapsed_s``, ``dtype``) with the
    file's ``device``, ``torch`` version, ``started`` time and ``file`` added; ``None`` when there is none (no GPU
    run yet, or a chapter downloaded alone). Not a record: it ran elsewhere, in float32, so no test checks it
    against the code and nbval cannot re-run it; a chapter shows it as measured there."""
    found = []
    for path in sorted(Path(folder).glob("*/*.json")):
        doc = json.loads(path.read_text())
        found += [{**run, "device": doc["device"], "torch": doc["torch"]["version"], "started": doc["started"],
                   "file": path.relative_to(folder).as_posix()}
                  for run in doc.get("runs", ())
                  if (run.get("paper"), run.get("scale"), run.get("status")) == (name, scale, "ok")]
    return max(found, key=lambda run: run["started"], default=None)


def with_provenance(record: dict) -> dict:
    """A copy of a results record whose claims carry the ``provenance`` and ``source`` that the current code gives
    them (the paper module's ``provenance_of``, with the record's config); nothing else changes."""
    paper = papers.get(record["paper"])
    if paper.provenance is None:
        raise ValueError(f"paper {paper.name!r} registers no provenance_of: cannot annotate its record")
    claims = []
    for claim in record["claims"]:
        claim = dict(claim)
        claim.update(paper.provenance(claim["id"], record.get("config")))
        claims.append(claim)
    return {**record, "claims": claims}


def annotate_provenance(path: str | Path, revision: str | None = None) -> Path:
    """One-off migration of a record made before claims had a provenance: fill in each claim's ``provenance``
    and ``source`` from the current code without rerunning, and mark the record with ``"provenance_annotated"``:
    the git revision of the annotating code (``revision``, default the checked-out one). Rewrites ``path``."""
    path = Path(path)
    record = with_provenance(json.loads(path.read_text()))
    mark = revision or runtime.git_revision()
    record.pop("provenance_annotated", None)
    out = {}
    for key, value in record.items():
        out[key] = value
        if key == "git_revision":  # beside the revision of the code that ran it
            out["provenance_annotated"] = mark
    out.setdefault("provenance_annotated", mark)
    return runtime.write_json_atomic(path, out)


COLUMNS = {column: (column, *(s for s, joins in papers.EXTRA_SCALES.items() if joins == column))
           for column in ("quick", "paper")}
"""The ledger's columns and the recorded scales each is made of: a paper whose paper-scale run is split in two
presets (chen2022: ``paper`` and ``paper-extras``) shows both records as one paper-scale column."""


def load_claims(name: str, column: str, results_dir: str | Path | None = RESULTS_DIR) -> Ledger | None:
    """The claims of paper ``name`` in ledger column ``column`` (:data:`COLUMNS`): each claim from the first record
    of the column's scales in which it ran (else from the first record); ``None`` when none is recorded."""
    reports = [r for r in (load_report(name, s, results_dir) for s in COLUMNS[column]) if r is not None]
    if not reports:
        return None
    chosen = {}
    for report in reports:
        for claim in report.claims:
            if claim.id not in chosen or (claim.ran and not chosen[claim.id].ran):
                chosen[claim.id] = claim
    return Ledger(chosen.values())


def _recorded_claims(name: str, results_dir) -> tuple[dict, dict]:
    """Paper ``name``'s recorded claims, each id once (the first :class:`Claim` seen over its quick and paper
    columns, in that order), and the claims by column (``None`` where not recorded)."""
    columns = {column: load_claims(name, column, results_dir) for column in COLUMNS}
    first = {}
    for claims in columns.values():
        for claim in claims or ():
            first.setdefault(claim.id, claim)
    return first, columns


def compare_claims(ours: Report, record: Report) -> list[dict]:
    """Claim by claim, ``ours`` beside a recorded report of the same paper (a GPU run beside the CPU record, say).

    One dict per claim id of either report: both verdicts, whether they agree (``None`` when a side lacks the claim
    or did not run it), and for numeric values (not booleans) the absolute and relative difference of ours from the
    record. The relative difference means little for values near zero (a rounding-level gap, say), hence both.
    """
    theirs = {c.id: c for c in record.claims}
    mine = {c.id: c for c in ours.claims}
    rows = []
    for claim_id in [*mine, *(i for i in theirs if i not in mine)]:
        a, b = mine.get(claim_id), theirs.get(claim_id)
        row = {"id": claim_id, "holds": a.holds if a else None, "record_holds": b.holds if b else None,
               "agree": None, "abs_diff": None, "rel_diff": None}
        if a and b and a.ran and b.ran:
            row["agree"] = a.holds == b.holds
        if a and b and _is_number(a.reproduced) and _is_number(b.reproduced):
            gap = abs(float(a.reproduced) - float(b.reproduced))
            row["abs_diff"] = gap
            row["rel_diff"] = gap / abs(float(b.reproduced)) if b.reproduced else (0.0 if gap == 0 else math.inf)
        rows.append(row)
    return rows


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def claims_table(name: str, results_dir: str | Path = RESULTS_DIR):
    """One row per claim of paper ``name``: the paper's value beside ours at quick and at paper scale.

    Reads the recorded reports ``results/<name>-<scale>.json`` of each column's scales (:func:`load_claims`); a
    column with none recorded shows "not run".
    """
    from moetheory.ledger import NOT_RUN, side_by_side

    first, by_column = _recorded_claims(name, results_dir)
    table = side_by_side(by_column, verdicts=False, absent=NOT_RUN)
    for key in ("statement", "provenance", "source", "criterion"):
        table[key] = [getattr(first[i], key) for i in table.index]
    columns = ["statement", "paper", "provenance", "ours (quick)", "holds (quick)", "ours (paper)", "holds (paper)",
               "criterion", "source"]
    return table[columns].astype(object)


def _held(claims: Ledger) -> str:
    """``"5 of 7 hold"``, with the claims that did not run counted apart."""
    ran = [c for c in claims if c.ran]
    text = f"{sum(c.holds for c in ran)} of {len(ran)} hold"
    skipped = len(claims) - len(ran)
    return text + (f" ({skipped} not run)" if skipped else "")


def summary_table(results_dir: str | Path = RESULTS_DIR):
    """Per registered paper: how many claims hold in the recorded quick and paper-scale runs."""
    import pandas as pd

    rows = []
    for name in sorted(papers.TITLES):  # names only: imports no paper module
        row = {"paper": name}
        for column in COLUMNS:
            claims = load_claims(name, column, results_dir)
            row[f"{column} scale"] = _held(claims) if claims else "not run"
        rows.append(row)
    return pd.DataFrame(rows, columns=["paper", "quick scale", "paper scale"]).set_index("paper")


def provenance_counts(results_dir: str | Path = RESULTS_DIR):
    """Claims per provenance per registered paper, from the recorded quick and paper-scale results (each claim id
    counted once): one row a paper, one column per provenance in :data:`moetheory.ledger.PROVENANCES` order, and
    ``total``."""
    import pandas as pd

    from moetheory.ledger import PROVENANCES

    rows = {}
    for name in sorted(papers.TITLES):  # names only: imports no paper module
        first, _ = _recorded_claims(name, results_dir)
        if first:
            rows[name] = {p: sum(c.provenance == p for c in first.values()) for p in PROVENANCES}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(PROVENANCES), dtype=int)
    table["total"] = table.sum(axis=1)
    return table
