"""Command line: ``moetheory list`` and ``moetheory reproduce NAME ... [--scale] [--device] [--json] [--out DIR]``.

Exit status: 0 when every claim holds, 1 when one does not, 2 on bad usage (unknown paper, scale, device or
config field, with the allowed values in a one-line message).
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import fields

from moetheory import papers, runtime
from moetheory.reproduce import prepare, reproduce


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moetheory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the registered papers and their claims' prefix")
    rep = sub.add_parser("reproduce", help="run experiments and check their claims")
    rep.add_argument("names", nargs="+", metavar="NAME", help="registered paper names (see `moetheory list`)")
    rep.add_argument("--scale", default="quick", choices=runtime.SCALES, help="experiment size (default quick)")
    rep.add_argument("--device", default="auto", choices=runtime.DEVICES, help="default auto: cuda if available")
    rep.add_argument("--json", action="store_true", help="print one JSON object per paper instead of tables")
    rep.add_argument("--out", metavar="DIR", help="write DIR/<paper>-<scale>.json (atomically) for each paper")
    rep.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a config field, e.g. --set n_seeds=5 (repeatable)")
    rep.add_argument("--threads", type=int, default=1, metavar="N",
                     help="torch CPU threads (default 1: fastest for these small models on small, shared CPUs)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _coerce(config, key: str, text: str):
    hints = typing.get_type_hints(type(config))
    kind = hints.get(key, str)
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if origin is tuple or kind is tuple:
            return tuple(json.loads(f"[{text}]"))
        if kind in (int, float):
            return kind(text)
        return text
    except ValueError:
        raise UsageError(f"--set {key}: cannot read {text!r} as {getattr(kind, '__name__', kind)}") from None


def parse_overrides(config, items: list[str]) -> dict:
    """``["n_seeds=5"]`` -> ``{"n_seeds": 5}``, typed from the config dataclass; errors name allowed fields."""
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


def _cmd_list() -> int:
    for name, paper in papers.registry().items():
        print(f"{name:<12} {paper.title}")
    return 0


def _cmd_reproduce(args) -> int:
    # Validate every name, the scale, the device and the overrides before running anything.
    try:
        runtime.set_threads(args.threads)
    except ValueError as err:
        raise UsageError(f"--threads: {err}") from None
    plans = []
    for name in args.names:
        try:
            _, config, _ = prepare(name, args.scale, args.device)
            overrides = parse_overrides(config, args.overrides)
            prepare(name, args.scale, args.device, overrides)
        except ValueError as err:
            raise UsageError(str(err)) from None
        plans.append((name, overrides))
    status = 0
    for name, overrides in plans:
        report = reproduce(name, args.scale, args.device, progress=not args.no_progress, overrides=overrides)
        if args.out:
            path = report.write(args.out)
            print(f"wrote {path}", file=sys.stderr)
        if args.json:
            print(json.dumps(report.to_json()))
        else:
            print(f"== {report.paper} ({report.scale}, {report.device}, {report.elapsed_s:.1f} s)")
            print(repr(report.claims))
        status = max(status, 0 if report.claims.all_hold else 1)
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
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
