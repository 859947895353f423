"""Generators for each paper's synthetic distribution, one submodule per setting.

Every public name (``__all__``) of every submodule is re-exported here, so ``from moetheory.data import
sample_gated_moe`` works without a central list to edit. Generators are deterministic for a seed.
"""

import importlib
import pkgutil

__all__: list[str] = []


def _export_submodules() -> None:
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name in getattr(module, "__all__", ()):
            globals()[name] = getattr(module, name)
            __all__.append(name)


_export_submodules()
