"""Runtime: device resolution, seeding, thread control, scales and provenance.

The MoE primer chapter introduces these; every experiment goes through them so that the same code runs on a
2-core CPU (the notebooks, CI) and on a GPU (``--scale paper --device cuda``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from moetheory.checks import DEVICES, MAX_SEED, SCALES, check_choice, check_int

ENV_DEVICE = "MOETHEORY_DEVICE"
ENV_DTYPE = "MOETHEORY_DTYPE"
DTYPES = {"auto": None, "float32": torch.float32, "float64": torch.float64}
REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda"`` into a ``torch.device``.

    ``"auto"`` (or ``None``) reads ``MOETHEORY_DEVICE`` first, then picks CUDA when it is available.
    Asking for CUDA on a machine without it is an error, never a silent fall-back to the CPU.
    CUDA comes back indexed (``cuda:N``, the current device, or the index of a ``torch.device`` passed in), as
    tensors report it, so that a ``torch.Generator(device=...)`` made from it reports the same device.
    """
    index = None
    if isinstance(device, torch.device):
        device, index = device.type, device.index
    if device is None or device == "auto":
        device = os.environ.get(ENV_DEVICE, "auto") or "auto"
        check_choice(ENV_DEVICE, device, DEVICES)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
    check_choice("device", device, DEVICES)
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available here; use device='cpu' or 'auto'")
    if device == "cuda":
        return torch.device("cuda", torch.cuda.current_device() if index is None else index)
    return torch.device(device)


def same_device(a: str | torch.device, b: str | torch.device) -> bool:
    """Whether ``a`` and ``b`` name the same device: the same type, and the same index where both carry one.

    Compare devices with this, never with ``==``: ``torch.Generator(device="cuda").device`` is ``cuda`` (no index)
    while every CUDA tensor reports ``cuda:0``, and ``torch.device("cuda") != torch.device("cuda", 0)``.
    """
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def compute_dtype(device: str | torch.device | None = "auto") -> torch.dtype:
    """The floating-point type experiments compute in: float64 on the CPU, float32 on CUDA.

    On the CPU, float64 makes most recorded numbers independent of the host's SIMD path: MKL, oneDNN and ATen sum
    in other orders on AVX2 and AVX-512 hosts, and training amplifies a last-bit difference by many orders of
    magnitude; from float32's 1e-7 it reaches the printed digits, from float64's 1e-16 it usually does not.
    Chaotic training (some Adam runs) amplifies even that: see the README, "Reproducible on any machine".
    On a GPU float32 is several times faster, and bit-for-bit agreement
    with the CPU records is not promised there anyway (atomic adds, other random streams). The environment
    variable ``MOETHEORY_DTYPE`` (``float32``, ``float64`` or ``auto``) overrides the choice.
    """
    name = os.environ.get(ENV_DTYPE, "auto") or "auto"
    check_choice(ENV_DTYPE, name, DTYPES)
    if DTYPES[name] is not None:
        return DTYPES[name]
    return torch.float64 if resolve_device(device).type == "cpu" else torch.float32


@contextmanager
def precision(device: str | torch.device | None = "auto"):
    """Make :func:`compute_dtype` torch's default floating type inside the block (restored afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(compute_dtype(device))
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def setup(device: str | torch.device | None = "auto", threads: int | None = 1) -> torch.device:
    """A chapter's first call: resolve the device (``MOETHEORY_DEVICE`` decides under ``"auto"``), pin torch's
    CPU threads and make :func:`compute_dtype` the default floating type for the session; returns the device."""
    dev = resolve_device(device)
    set_threads(threads)
    torch.set_default_dtype(compute_dtype(dev))
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a CPU ``torch.Generator`` seeded the same way."""
    seed = check_int("seed", seed, 0, MAX_SEED)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n: int | None = 1) -> int:
    """Pin torch's intra-op threads (``None`` keeps the current setting); returns the number in use.

    On a 2-core machine, two processes that each use two threads make small-matrix training up to 10x slower,
    so notebooks and benchmarks pin one thread.
    """
    if n is not None:
        torch.set_num_threads(check_int("threads", n, 1))
    return torch.get_num_threads()


def check_scale(scale: str) -> str:
    """Validate an experiment scale name: ``tiny`` (tests), ``quick`` (notebooks, CI) or ``paper``."""
    return check_choice("scale", scale, SCALES)


def progress(iterable=None, *, total=None, desc=None, enabled: bool = False, **kwargs):
    """A tqdm progress bar on stderr, off unless ``enabled`` (notebooks keep stderr clean for nbval)."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False, **kwargs)


def versions() -> dict[str, str]:
    """Versions of the interpreter and the numerical stack, for provenance records."""
    import matplotlib
    import scipy
    import sympy

    from moetheory import __version__

    return {
        "moetheory": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sympy": sympy.__version__,
        "matplotlib": matplotlib.__version__,
        "cuda": torch.version.cuda or "none",
    }


def device_description(device: torch.device) -> str:
    """``cpu`` or ``cuda (NVIDIA H100 ...)``: what ran an experiment."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git_revision(root: Path = REPO_ROOT) -> str:
    """The checked-out commit (with ``+dirty`` when tracked files other than the records in ``results/`` have
    changes, so that recording one result after another keeps the code's revision clean), or ``unknown`` outside
    git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root, capture_output=True, text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def config_dict(config) -> dict:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    if not is_dataclass(config):
        raise TypeError(f"config must be a dataclass instance; got {type(config).__name__}")
    return json.loads(json.dumps(asdict(config), default=str))


def replace_config(config, **overrides):
    """``dataclasses.replace`` with a clear error for unknown fields (and the config's own validation)."""
    from dataclasses import replace

    names = [f.name for f in fields(config)]
    for key in overrides:
        check_choice(f"{type(config).__name__} field", key, names)
    return replace(config, **overrides)


def write_json_atomic(path: str | Path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600); give it a new file's usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
