"""Command line: ``moetheory list`` and ``moetheory reproduce NAME ... [--scale] [--device] [--json] [--out DIR]``.

Exit status: 0 when every claim that ran holds, 1 when one fails, 2 on bad usage (a one-line message naming the
parameter and the allowed values; nothing has run), 3 when a paper's run failed (one line
``moetheory: error: <paper>: <where>: <cause>`` on stderr; the other papers still run, and every finished report is
still printed and written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
import typing
from dataclasses import fields
from pathlib import Path

from moetheory import papers, runtime
from moetheory.reproduce import prepare, reproduce

EXIT_HOLD, EXIT_FAIL, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3
ENV_TRACEBACK = "MOETHEORY_TRACEBACK"

EPILOG = f"""\
exit status:
  {EXIT_HOLD}  every claim that ran holds (a claim whose experiment did not run shows "not run")
  {EXIT_FAIL}  a claim fails
  {EXIT_USAGE}  bad usage: unknown paper, scale, device or config field, a value out of its range, or an
     unusable --out; nothing has run
  {EXIT_RUN_FAILED}  a run failed: one line "moetheory: error: <paper>: <where>: <cause>" on stderr (--traceback or
     {ENV_TRACEBACK}=1 adds the traceback); the other papers still run and their reports are still
     printed and written

--out DIR is checked before any run starts: DIR must be a writable directory (created when missing); an
existing file named DIR is refused. Each paper's claims are printed first, then its report is written to
DIR/<paper>-<scale>.json, atomically replacing a file of that name. The report records the git revision
taken when the run started.

--set FIELD=VALUE: tuple fields take comma-separated values (--set settings=S1,S2 or --set dims=8,16).
"""


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moetheory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the registered papers and their claims' prefix")
    rep = sub.add_parser("reproduce", help="run experiments and check their claims", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("names", nargs="+", metavar="NAME", help="registered paper names (see `moetheory list`)")
    rep.add_argument("--scale", default="quick", choices=runtime.SCALES, help="experiment size (default quick)")
    rep.add_argument("--device", default="auto", choices=runtime.DEVICES, help="default auto: cuda if available")
    rep.add_argument("--json", action="store_true", help="print one JSON object per paper instead of tables")
    rep.add_argument("--out", metavar="DIR",
                     help="write DIR/<paper>-<scale>.json for each paper (replaces an existing one atomically)")
    rep.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a config field, e.g. --set n_seeds=5 (repeatable)")
    rep.add_argument("--threads", type=int, default=1, metavar="N",
                     help="torch CPU threads (default 1: fastest for these small models on small, shared CPUs)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    rep.add_argument("--traceback", action="store_true",
                     help=f"print the traceback of a failed run (also: {ENV_TRACEBACK}=1)")
    return parser


def _scalar(kind, text: str):
    """One value of type ``kind`` (bool, int, float or str) from its command-line text."""
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError
        return text.lower() in ("true", "1")
    if kind in (int, float):
        return kind(text)
    if kind is str:
        return json.loads(text) if text[:1] == '"' else text  # S1 or "S1" (JSON quotes, as in --set 'x="S1"')
    raise TypeError(kind)


def _coerce(config, key: str, text: str):
    kind = typing.get_type_hints(type(config)).get(key, str)
    name = getattr(kind, "__name__", None) or str(kind)
    if typing.get_origin(kind) is tuple or kind is tuple:
        args = typing.get_args(kind)
        item = args[0] if args else int
        if item not in (bool, int, float, str):
            raise UsageError(f"--set {key}: a tuple of {getattr(item, '__name__', item)} cannot be set from the "
                             "command line")
        name = f"comma-separated {item.__name__} values"
        parts = [p.strip() for p in text.strip().strip("[]()").split(",")]
        parts = parts[:-1] if parts and parts[-1] == "" else parts  # "S1," is a 1-tuple; "" is empty
    else:
        item, parts = kind, None
    try:
        if parts is None:
            return _scalar(item, text)
        return tuple(_scalar(item, p) for p in parts)
    except (ValueError, TypeError):
        raise UsageError(f"--set {key}: cannot read {text!r} as {name}") from None


def parse_overrides(config, items: list[str]) -> dict:
    """``["n_seeds=5"]`` -> ``{"n_seeds": 5}``, typed from the config dataclass; errors name allowed fields.

    Tuple fields take comma-separated values: ``settings=S1,S2`` -> ``("S1", "S2")``, ``dims=8,16`` -> ``(8, 16)``.
    """
    names = [f.name for f in fields(config)]
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects FIELD=VALUE; got {item!r}")
        if key not in names:
            raise UsageError(f"--set: unknown field {key!r} for {type(config).__name__}; allowed: {', '.join(names)}")
        out[key] = _coerce(config, key, text)
    return out


def check_out_dir(text: str, names: list[str], scale: str) -> Path:
    """The ``--out`` directory, created when missing and proven writable, before any run starts."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {text!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # os.access is not enough (root, read-only mounts, ACLs)
            pass
    except OSError as err:
        raise UsageError(f"--out: cannot write to {text!r}: {err.strerror or err}") from None
    for name in names:
        target = out / f"{name}-{scale}.json"
        if target.is_dir():
            raise UsageError(f"--out: {str(target)!r} is a directory; the report would replace it")
    return out


def run_error(paper: str, err: BaseException) -> str:
    """``<paper>: <where>: <cause>`` on one line: where is the innermost frame in the moetheory package (the caller
    of a :mod:`moetheory.checks` helper, which names the parameter in the cause)."""
    package = Path(papers.__file__).resolve().parent.parent
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(package)
            and Path(f.filename).resolve() != package / "checks.py"]
    where = "run"
    if ours or frames:  # the innermost frame in the package, else the innermost one
        frame = (ours or frames)[-1]
        path = Path(frame.filename).resolve()
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts) if ours else path.stem
        where = f"{module}.{frame.name} (line {frame.lineno})"
    cause = " ".join(f"{type(err).__name__}: {err}".split())
    return f"{paper}: {where}: {cause}"


def _cmd_list() -> int:
    for name, paper in papers.registry().items():
        print(f"{name:<12} {paper.title}")
    return EXIT_HOLD


def _show(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        print(f"== {report.paper} ({report.scale}, {report.device}, {report.elapsed_s:.1f} s)")
        print(repr(report.claims))
    sys.stdout.flush()


def _cmd_reproduce(args) -> int:
    # Validate every name, the scale, the device, the overrides and --out before running anything.
    try:
        runtime.set_threads(args.threads)
    except ValueError as err:
        raise UsageError(f"--threads: {err}") from None
    plans = []
    for name in args.names:
        try:
            _, config, _ = prepare(name, args.scale, args.device)
        except ValueError as err:
            raise UsageError(str(err)) from None
        overrides = parse_overrides(config, args.overrides)
        try:
            prepare(name, args.scale, args.device, overrides)
        except (ValueError, TypeError) as err:  # the config's own validation: names the field and its range
            raise UsageError(f"{name}: --set: {err}") from None
        plans.append((name, overrides))
    out = check_out_dir(args.out, args.names, args.scale) if args.out else None
    show_traceback = args.traceback or os.environ.get(ENV_TRACEBACK, "") not in ("", "0")
    status = EXIT_HOLD
    for name, overrides in plans:  # one paper's failure never stops the others nor loses their reports
        try:
            report = reproduce(name, args.scale, args.device, progress=not args.no_progress, overrides=overrides)
        except Exception as err:
            if show_traceback:
                traceback.print_exc()
            print(f"moetheory: error: {run_error(name, err)}", file=sys.stderr)
            status = EXIT_RUN_FAILED
            continue
        _show(report, args.json)  # printed before it is written: a failed write loses nothing
        status = max(status, EXIT_HOLD if report.claims.all_hold else EXIT_FAIL)
        if out is not None:
            try:
                path = report.write(out)
            except OSError as err:
                print(f"moetheory: error: {name}: --out {str(out)!r}: {err}", file=sys.stderr)
                status = EXIT_RUN_FAILED
            else:
                print(f"wrote {path}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "list":
            return _cmd_list()
        return _cmd_reproduce(args)
    except UsageError as err:
        print(f"moetheory: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
