"""``python -m moetheory``: the command line (see :mod:`moetheory.cli`)."""

import sys

from moetheory.cli import main

sys.exit(main())
