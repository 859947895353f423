"""Command line: moetheory list, and moetheory reproduce NAME ... [--scale] [--device] [--json] [--out DIR].

Exit status: 0 when every claim that ran holds, 1 when one fails, 2 on bad usage (a one-line message naming the
parameter and the allowed values; nothing has run), 3 when a paper's run failed or its module cannot be imported
(one line ``moetheory: error: <paper>: <where>: <cause>`` on stderr; the other papers still run, and every
finished report is still printed and written).

Start-up is kept light: ``moetheory --help`` and ``moetheory list`` import neither torch nor pandas (the paper
titles come from :data:`moetheory.papers.TITLES`); ``reproduce`` imports what it runs, and ``reproduce --help``
imports the paper modules to list their config fields.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import sys
import tempfile
import traceback
import typing
from dataclasses import fields
from pathlib import Path

from moetheory import papers
from moetheory.checks import DEVICES, SCALES

EXIT_HOLD, EXIT_FAIL, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3
ENV_TRACEBACK = "MOETHEORY_TRACEBACK"
DESCRIPTION = "Run the experiments of theory papers on Mixture of Experts and check the papers' claims."
SCALE_HELP = {
    "tiny": "seconds: unit tests",
    "quick": "minutes on one CPU thread: the chapters, CI (the default)",
    "paper": "the papers' own sizes, seeds and epochs; a GPU is recommended, the CPU works",
    "paper-extras": "chen2022 only: what its paper scale leaves out (ablations, Theorem 4.1, entropy protocol, "
                    "width sweep, Fashion-MNIST-Rotate)",
}
SCALARS = (bool, int, float, str)  # the types --set reads, alone or as the items of a tuple

EXIT_HELP = f"""\
exit status:
  {EXIT_HOLD}  every claim that ran holds (a claim whose experiment did not run shows "not run")
  {EXIT_FAIL}  a claim fails
  {EXIT_USAGE}  bad usage: unknown paper, scale, device or config field, a value out of its range, or an
     unusable --out; nothing has run
  {EXIT_RUN_FAILED}  a run failed, or a paper's module cannot be imported: one line
     "moetheory: error: <paper>: <where>: <cause>" on stderr (--traceback or {ENV_TRACEBACK}=1 adds the
     traceback); the other papers still run and their reports are still printed and written

--out DIR is checked before any run starts: DIR must be a writable directory (created when missing); an
existing file named DIR is refused. Each paper's claims are printed first, then its report is written to
DIR/<paper>-<scale>.json, atomically replacing a file of that name. The report records the git revision
taken when the run started.
"""

SET_HELP = """\
--set FIELD=VALUE overrides a field of each named paper's config; the fields and their types follow. A type
written "int,..." is a tuple: comma-separated values (--set dims=8,16), a single value makes a 1-tuple
(--set settings=S2) and an empty value the empty tuple (--set more_clusters=). Values outside the range a
config allows are refused before anything runs.
"""


def _papers_help() -> str:
    return "".join(f"  {name:<12} {title}\n" for name, title in sorted(papers.TITLES.items()))


def _main_epilog() -> str:
    return (f"papers:\n{_papers_help()}\n"
            "moetheory reproduce --help lists the scales, the exit status and the fields --set accepts.\n")


def _reproduce_epilog() -> str:
    """The help after reproduce's options; imports every paper module (for their config fields), so it is built
    only when the help is printed."""
    scales = "".join(f"  {scale:<12} {SCALE_HELP[scale]}\n" for scale in (*SCALES, *papers.EXTRA_SCALES))
    return (f"papers (NAME):\n{_papers_help()}\nscales (--scale):\n{scales}\n{EXIT_HELP}\n{SET_HELP}"
            + "".join(_fields_help(name) for name in sorted(papers.TITLES)))


def _fields_help(name: str) -> str:
    """``  <name>:`` and its config's fields as ``field=type``, wrapped; a module that cannot be imported says so."""
    try:
        config = type(papers.get(name).config("tiny"))
    except Exception as err:  # a broken paper module must not break the help
        return f"  {name}: (fields unknown: {' '.join(str(err).split())})\n"
    items = [f"{field.name}={_type_text(_field_kind(config, field.name))}" for field in fields(config)]
    lines = [""]
    for item in items:  # whole items per line: "regimes=(not settable)" is never split at its space
        if lines[-1] and len(lines[-1]) + 2 + len(item) > 96:
            lines.append("")
        lines[-1] = f"{lines[-1]}  {item}" if lines[-1] else item
    return f"  {name}:\n" + "".join(f"    {line}\n" for line in lines)


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, epilog_of=None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.epilog_of = epilog_of  # a function giving the epilog, called only when the help is printed

    def format_help(self):
        if self.epilog_of is not None:
            self.epilog, self.epilog_of = self.epilog_of(), None
        return super().format_help()

    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moetheory", description=DESCRIPTION, epilog_of=_main_epilog)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the registered papers: name and title", description="List the registered "
                   "papers: the name that reproduce takes (also the prefix of its claim ids) and the title.")
    rep = sub.add_parser("reproduce", help="run papers' experiments and check their claims",
                         description="Run each named paper's experiment at a scale and check its claims.",
                         epilog_of=_reproduce_epilog)
    rep.add_argument("names", nargs="+", metavar="NAME", help="registered paper names (listed below)")
    rep.add_argument("--scale", default="quick", choices=(*SCALES, *papers.EXTRA_SCALES),
                     help="experiment size (default quick; below)")
    rep.add_argument("--device", default="auto", choices=DEVICES,
                     help="default auto: $MOETHEORY_DEVICE if set, else cuda if available, else cpu")
    rep.add_argument("--json", action="store_true", help="print one JSON object per paper instead of tables")
    rep.add_argument("--out", metavar="DIR",
                     help="write DIR/<paper>-<scale>.json for each paper (replaces an existing one atomically)")
    rep.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a config field, e.g. --set n_seeds=5 (repeatable; fields below)")
    rep.add_argument("--threads", type=int, default=1, metavar="N",
                     help="torch CPU threads (default 1: fastest for these small models on small, shared CPUs)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    rep.add_argument("--traceback", action="store_true",
                     help=f"print the traceback of a failed run (also: {ENV_TRACEBACK}=1)")
    return parser


def _field_kind(config_type: type, key: str) -> tuple[type, bool] | None:
    """``(item type, is a tuple)`` of a config field that --set can read, ``None`` for one it cannot (a tuple of
    dataclasses, say)."""
    kind = typing.get_type_hints(config_type).get(key, str)
    if typing.get_origin(kind) is tuple or kind is tuple:
        args = typing.get_args(kind)
        item = args[0] if args else int
        return (item, True) if item in SCALARS else None
    return (kind, False) if kind in SCALARS else None


def _type_text(kind: tuple[type, bool] | None) -> str:
    """What --set expects, as the help writes it: ``int``, ``str,...`` (a tuple) or ``(not settable)``."""
    if kind is None:
        return "(not settable)"
    item, is_tuple = kind
    return f"{item.__name__},..." if is_tuple else item.__name__


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
    kind = _field_kind(type(config), key)
    if kind is None:
        hint = typing.get_type_hints(type(config)).get(key, str)
        item = (typing.get_args(hint) or (hint,))[0]
        what = f"a tuple of {getattr(item, '__name__', item)}" if typing.get_origin(hint) is tuple else \
            f"a {getattr(hint, '__name__', hint)}"
        raise UsageError(f"--set {key}: {what} cannot be set from the command line")
    item, is_tuple = kind
    try:
        if not is_tuple:
            return _scalar(item, text)
        parts = [p.strip() for p in text.strip().strip("[]()").split(",")]
        parts = parts[:-1] if parts and parts[-1] == "" else parts  # "S1," is a 1-tuple; "" is empty
        return tuple(_scalar(item, p) for p in parts)  # a single value ("S2") is a 1-tuple
    except (ValueError, TypeError):
        name = f"comma-separated {item.__name__} values" if is_tuple else item.__name__
        raise UsageError(f"--set {key}: cannot read {text!r} as {name}") from None


def parse_overrides(config, items: list[str]) -> dict:
    """``["n_seeds=5"]`` -> ``{"n_seeds": 5}``, typed from the config dataclass; errors name allowed fields.

    Tuple fields take comma-separated values: ``settings=S1,S2`` -> ``("S1", "S2")``, ``dims=8,16`` -> ``(8, 16)``;
    a single value is a 1-tuple: ``settings=S2`` -> ``("S2",)``.
    """
    names = [f.name for f in fields(config)]
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects FIELD=VALUE; got {item!r}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"--set: unknown field {key!r} for {type(config).__name__}; allowed: "
                             f"{', '.join(names)}{hint}")
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
    of a :mod:`moetheory.checks` helper, which names the parameter in the cause); for a paper module that cannot be
    imported, the innermost frame of the import's cause."""
    package = Path(papers.__file__).resolve().parent.parent
    failed_import = isinstance(err, papers.PaperImportError)
    origin = err.__cause__ if failed_import and err.__cause__ is not None else err
    frames = traceback.extract_tb(origin.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(package)
            and Path(f.filename).resolve() != package / "checks.py"]
    where = "run"
    if ours or frames:  # the innermost frame in the package, else the innermost one
        frame = (ours or frames)[-1]
        path = Path(frame.filename).resolve()
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts) if ours else path.stem
        where = f"{module}.{frame.name} (line {frame.lineno})"
    cause = " ".join((str(err) if failed_import else f"{type(err).__name__}: {err}").split())
    return f"{paper}: {where}: {cause}"


def _cmd_list() -> int:
    for name, title in sorted(papers.TITLES.items()):  # imports no paper module
        print(f"{name:<12} {title}")
    return EXIT_HOLD


def _show(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        print(f"== {report.paper} ({report.scale}, {report.device}, {report.elapsed_s:.1f} s)")
        print(repr(report.claims))
    sys.stdout.flush()


def _cmd_reproduce(args) -> int:
    from moetheory import runtime  # torch: imported here, so that --help and list start fast
    from moetheory.reproduce import prepare, reproduce

    # Validate every name, the scale, the device, the overrides and --out before running anything. A paper whose
    # module cannot be imported is a failed run (exit 3), reported in its turn: the other papers still run.
    try:
        runtime.set_threads(args.threads)
    except ValueError as err:
        raise UsageError(f"--threads: {err}") from None
    plans = []
    for name in args.names:
        try:
            _, config, _ = prepare(name, args.scale, args.device)
        except papers.PaperImportError as err:
            plans.append((name, None, err))
            continue
        except ValueError as err:
            raise UsageError(str(err)) from None
        try:
            overrides = parse_overrides(config, args.overrides)
        except UsageError as err:
            raise UsageError(f"{name}: {err}") from None
        try:
            prepare(name, args.scale, args.device, overrides)
        except (ValueError, TypeError) as err:  # the config's own validation: names the field and its range
            raise UsageError(f"{name}: --set: {err}") from None
        plans.append((name, overrides, None))
    out = check_out_dir(args.out, args.names, args.scale) if args.out else None
    show_traceback = args.traceback or os.environ.get(ENV_TRACEBACK, "") not in ("", "0")
    status = EXIT_HOLD
    for name, overrides, failed in plans:  # one paper's failure never stops the others nor loses their reports
        try:
            if failed is not None:
                raise failed
            # what a run prints (a data set's notice) goes to stderr, so that --json's stdout stays JSON
            with contextlib.redirect_stdout(sys.stderr):
                report = reproduce(name, args.scale, args.device, progress=not args.no_progress,
                                   overrides=overrides)
        except Exception as err:
            if show_traceback:
                traceback.print_exception(err)
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
