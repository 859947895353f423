"""One figure style for the whole book.

Each chapter figure is made with :func:`figure` (``fig, ax = plt.subplots()`` underneath), given a name, and
shown with a caption through myst-nb's ``glue`` so that ``{numref}`` can refer to it.
"""

from __future__ import annotations

import functools

import matplotlib as mpl
import matplotlib.pyplot as plt

PALETTE = ("#1f5aa6", "#d1495b", "#2e933c", "#edae49", "#6c4f9e", "#00798c", "#8c564b", "#7f7f7f")
"""Colours in order of use; experts and seeds cycle through them."""

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
}


@functools.cache
def _retina() -> None:
    """In a notebook, figures become PNGs at twice their dpi shown at their size: sharp on high-density screens
    and in the book (the image's width and height go with it as metadata)."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # no IPython: nothing displays figures inline
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def figure(nrows: int = 1, ncols: int = 1, *, width: float | None = None, height: float | None = None, **kwargs):
    """``plt.subplots`` in the book's style; ``width``/``height`` in inches (default 6.4 x 4.0 per row)."""
    _retina()
    with mpl.rc_context(STYLE):
        w = width or STYLE["figure.figsize"][0]
        h = height or STYLE["figure.figsize"][1] * (0.8 if nrows > 1 else 1.0) * nrows
        fig, ax = plt.subplots(nrows, ncols, figsize=(w, h), layout="constrained", **kwargs)
    for a in fig.axes:
        _apply(a)
    return fig, ax


def _apply(ax) -> None:
    ax.grid(True, alpha=STYLE["grid.alpha"])
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.set_prop_cycle(STYLE["axes.prop_cycle"])


def band(ax, x, values, *, label=None, color=None, alpha: float = 0.2):
    """Mean line and min-max band over seeds; ``values`` is ``(seeds, len(x))``."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    line = ax.plot(x, values.mean(0), label=label, color=color)[0]
    ax.fill_between(x, values.min(0), values.max(0), color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def glue_figure(name: str, fig) -> None:
    """Hand ``fig`` to myst-nb's ``glue`` under ``name`` (for a ``{glue:figure}`` with caption) and close it."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)
