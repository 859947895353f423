"""nbval set-up for the chapters (book/*.ipynb): glued figures are not compared byte for byte.

nbval compares every output of a cell, but skips plain ``image/png``. A figure glued with myst-nb's ``glue`` is
stored under ``application/papermill.record/image/png`` (and its other image types), which nbval would compare
byte for byte: a figure's pixels follow its data to the last bit, and on another CPU the last bits differ. The
data behind every figure are checked through the numbers the chapters print, and the figure's ``text/plain``
repr (its size and axes) is still compared.
"""

from __future__ import annotations

GLUED_IMAGES = tuple(f"application/papermill.record/{kind}" for kind in ("image/png", "image/jpeg", "image/svg+xml"))

try:
    from nbval import plugin as _nbval
except ImportError:  # nbval absent: nothing to configure
    _nbval = None

if _nbval is not None:
    _init = _nbval.IPyNbFile.__init__

    def _init_skipping_glued_images(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.skip_compare = tuple(self.skip_compare) + GLUED_IMAGES

    _nbval.IPyNbFile.__init__ = _init_skipping_glued_images
