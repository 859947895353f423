"""Argument validation with messages that name the parameter and the allowed values.

Every public entry point (configs, estimators, generators, the CLI) validates through these helpers, so bad input
fails early with one readable line instead of a stack trace from deep inside torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

MAX_SEED = 2**32 - 1
"""The largest seed :func:`moetheory.runtime.seed_everything` accepts (numpy's legacy seeding is 32-bit)."""

SCALES = ("tiny", "quick", "paper")
"""Every paper's ``config(scale)`` presets: ``tiny`` (seconds: unit tests), ``quick`` (the chapters, CI) and
``paper`` (the papers' own sizes, seeds and epochs). Here, not in :mod:`moetheory.runtime`, so that the command line
knows them without importing torch."""

DEVICES = ("auto", "cpu", "cuda")
"""The devices :func:`moetheory.runtime.resolve_device` accepts."""


def check_choice(name: str, value, allowed: Iterable):
    """Return ``value`` if it is one of ``allowed``; otherwise raise ``ValueError`` listing them."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer in ``[low, high]``."""
    integer = isinstance(value, Integral) and not isinstance(value, bool)
    if not integer or (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_interval_text(low, high, False, False)}; got {value!r}")
    return int(value)


def check_float(
    name: str,
    value,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float in the interval given by ``low``/``high`` (closed unless ``*_open``)."""
    text = _interval_text(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{text}; got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be a finite number{text}; got {value!r}")
    return float(value)


def _interval_text(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""
