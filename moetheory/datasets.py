"""Real data for the analogue sections: UCI Airfoil Self-Noise (the makkuva2019 chapter) and Fashion-MNIST (the
chen2022 chapter). One home for finding, verifying and parsing them; the project never commits the files.

Each file is looked for, in order, in ``data_home`` (when given), ``$MOETHEORY_DATA`` (a directory laid out like
``../shared/data``: ``airfoil_self_noise.tsv``, ``fashion-mnist/*.gz``), the user cache (``$XDG_CACHE_HOME/moetheory``
or ``~/.cache/moetheory``), and a system package's directory (Fashion-MNIST: Debian's ``dataset-fashion-mnist`` in
``/usr/share/datasets/fashion-mnist``). Failing that it is downloaded into the cache (or ``data_home``); without a
network, :class:`DataNotFound` says in one line where we looked and how to get the file.

Checksums cover a file's *content*, so that equivalent encodings of the same data pass: the decompressed bytes of a
``.gz`` (Debian recompressed the upstream Fashion-MNIST files; the content is the same), and for the Airfoil table
its canonical text (see :func:`canonical_airfoil`). A mismatch is :class:`ChecksumMismatch`, naming the file and both
digests; a file that fails is never used. Verified digests are remembered per process, keyed by path, size and mtime.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["AIRFOIL_COLUMNS", "REGISTRY", "ChecksumMismatch", "DataError", "DataFile", "DataNotFound", "DataSet",
           "cache_dir", "canonical_airfoil", "load_airfoil", "load_fashion_mnist", "locate", "parse_idx"]

ENV = "MOETHEORY_DATA"
AIRFOIL_COLUMNS = ("Freq", "Angle", "Length", "Vel", "Displ", "Pressure")  # Hz, deg, m, m/s, m; the output in dB
DOWNLOAD_TIMEOUT_S = 60.0


class DataError(ValueError):
    """A data file is missing, corrupt or malformed; the message is one line."""


class DataNotFound(DataError):
    """No copy of a file anywhere we look, and no download."""


class ChecksumMismatch(DataError):
    """A file's content does not have the registered sha256."""


def _gunzip(raw: bytes) -> bytes:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw  # an already decompressed idx file passes as is


def canonical_airfoil(raw: bytes) -> bytes:
    """The Airfoil table in one canonical form, the form its checksum covers: our header line, the six fields of each
    row as written (numbers are not reformatted) joined by tabs, CRLF line ends (as the provided file has).

    Accepts the UCI original (whitespace-separated, no header) and the provided ``airfoil_self_noise.tsv``
    (tab-separated, with a header); the canonical form of the latter is the file byte for byte. Checked offline on a
    third-party copy of the UCI file (LF line ends, its own header), which maps onto the provided file exactly; a live
    UCI download was never tested here (no network). Should UCI's numbers ever differ, the download is refused
    (:class:`ChecksumMismatch`), not used.
    """
    try:
        rows = [line.split() for line in raw.decode("ascii").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise DataError(f"not the Airfoil table: a non-ASCII byte at offset {e.start}") from None
    if rows and not re.fullmatch(r"[-+.\deE]+", rows[0][0]):
        rows = rows[1:]  # a header line (ours, or another copy's): replaced by ours
    bad = next((i for i, row in enumerate(rows) if len(row) != len(AIRFOIL_COLUMNS)), None)
    if bad is not None:
        raise DataError(f"not the Airfoil table: data row {bad + 1} has {len(rows[bad])} fields, expected 6")
    return "".join("\t".join(row) + "\r\n" for row in [AIRFOIL_COLUMNS, *rows]).encode("ascii")


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to a data directory, as in ../shared/data
    sha256: str  # of the content: decompressed for .gz, canonical text for the Airfoil table
    urls: tuple[str, ...]  # download sources, tried in order
    alternates: tuple[str, ...] = ()  # other names for the same content (a .gz file's decompressed name is one)


@dataclass(frozen=True)
class DataSet:
    name: str
    files: dict[str, DataFile]  # key -> file
    content: Callable[[bytes], bytes]  # what the checksum covers: _gunzip, or canonical_airfoil
    store_content: bool = False  # a download is stored as its content (the Airfoil .tsv), else as downloaded (.gz)
    system_dirs: tuple[str, ...] = ()  # a system package's directories, holding the files by their base names
    package: str = ""  # the Debian package that installs them
    licence: str = ""


UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/00291/airfoil_self_noise.dat"
FMNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                  "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")


def _fmnist(name: str, sha256: str) -> DataFile:
    return DataFile(f"fashion-mnist/{name}.gz", sha256, tuple(m + name + ".gz" for m in FMNIST_MIRRORS))


REGISTRY: dict[str, DataSet] = {
    "airfoil": DataSet("airfoil", {"table": DataFile(
        "airfoil_self_noise.tsv", "f1746df437a75b4eb96a3f278c5aa8939ac0d19ae34867baa45721264d0d0477", (UCI,),
        ("airfoil_self_noise.dat",))}, canonical_airfoil, store_content=True, licence="CC BY 4.0"),
    "fashion-mnist": DataSet("fashion-mnist", {
        "train-images": _fmnist("train-images-idx3-ubyte",
                                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels": _fmnist("train-labels-idx1-ubyte",
                                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "test-images": _fmnist("t10k-images-idx3-ubyte",
                               "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "test-labels": _fmnist("t10k-labels-idx1-ubyte",
                               "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    }, _gunzip, system_dirs=("/usr/share/datasets/fashion-mnist",), package="dataset-fashion-mnist", licence="MIT"),
}


def cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/moetheory``, else ``~/.cache/moetheory``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "moetheory"


def _places(dataset: DataSet, file: DataFile, data_home) -> list[tuple[str, Path | None, list[Path]]]:
    """(label, directory, candidate paths) in search order; a directory of None was not configured."""
    names = (file.path, *file.alternates, *([file.path.removesuffix(".gz")] if file.path.endswith(".gz") else []))
    env = os.environ.get(ENV)
    places = [("data_home", Path(data_home), names)] if data_home is not None else []
    places += [(f"${ENV}", Path(env) if env else None, names), ("the cache", cache_dir(), names)]
    places += [("system", Path(d), [Path(n).name for n in names]) for d in dataset.system_dirs]
    return [(label, d, [d / n for n in rel] if d is not None else []) for label, d, rel in places]


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of the content, this process


def _read_verified(dataset: DataSet, file: DataFile, path: Path) -> bytes:
    """The content of ``path`` (what the checksum covers), after checking its sha256 (once per process)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    try:
        content = dataset.content(path.read_bytes())
    except (DataError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"moetheory: {path}: {dataset.name}: {e}") from None
    if _VERIFIED.get(key) != file.sha256:
        digest = hashlib.sha256(content).hexdigest()
        if digest != file.sha256:
            raise ChecksumMismatch(f"moetheory: checksum mismatch for {path} ({dataset.name}): the sha256 of its "
                                   f"content is {digest}, expected {file.sha256}; replace or delete the file")
        _VERIFIED[key] = digest
    return content


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, then rename it into place (never a partial file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(dataset: DataSet, file: DataFile, target: Path) -> tuple[Path | None, str]:
    """Try each URL; verify the content before writing ``target`` atomically. (path or None, why it failed)."""
    why = "no download source"
    for url in file.urls:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                raw = response.read()
        except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
            why = f"downloading {url} failed ({type(e).__name__}: {e})".replace("\n", " ")
            continue
        try:
            content = dataset.content(raw)
        except (DataError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"moetheory: {url}: {dataset.name}: {e}") from None
        digest = hashlib.sha256(content).hexdigest()
        if digest != file.sha256:
            raise ChecksumMismatch(f"moetheory: checksum mismatch for {url} ({dataset.name}): the sha256 of its "
                                   f"content is {digest}, expected {file.sha256}; nothing was written")
        _atomic_write(target, content if dataset.store_content else raw)
        return target, ""
    return None, why


def _locate_file(dataset: DataSet, file: DataFile, data_home=None, download: bool = True) -> Path:
    places = _places(dataset, file, data_home)
    for _, _, candidates in places:
        for path in candidates:
            if path.is_file():
                return path
    why = "downloads disabled"
    if download:
        home = Path(data_home) if data_home is not None else cache_dir()
        found, why = _download(dataset, file, home / file.path)
        if found is not None:
            return found
    looked = "; ".join(f"{label} {d if d is not None else '(unset)'}" for label, d, _ in places)
    how = f"set {ENV} to a directory holding {file.path}"
    how += f", install the Debian package {dataset.package}" if dataset.package else ""
    how += f", or download {file.urls[0]} into {cache_dir() / Path(file.path).parent}" if file.urls else ""
    raise DataNotFound(f"moetheory: data set {dataset.name}: {file.path} not found (looked in: {looked}); {why}; "
                       f"to get it: {how}")


def locate(name: str, keys=None, data_home=None, download: bool = True) -> dict[str, Path]:
    """Paths of data set ``name``'s files (all, or those in ``keys``), each found or downloaded, and verified.

    ``data_home``: a directory laid out like ``../shared/data``, searched first; a download goes there instead of the
    user cache. ``download=False``: never touch the network (a missing file is :class:`DataNotFound` at once).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(REGISTRY))}")
    dataset = REGISTRY[name]
    paths = {key: _locate_file(dataset, dataset.files[key], data_home, download) for key in keys or dataset.files}
    for key, path in paths.items():
        _read_verified(dataset, dataset.files[key], path)
    return paths


def _load(name: str, key: str, data_home, download: bool) -> bytes:
    """The verified content of one file of data set ``name``."""
    dataset, file = REGISTRY[name], REGISTRY[name].files[key]
    return _read_verified(dataset, file, _locate_file(dataset, file, data_home, download))


def load_airfoil(data_home=None, download: bool = True, return_X_y: bool = False):
    """UCI Airfoil Self-Noise (Brooks, Pope and Marcolini 1989): 1503 rows, float64 columns :data:`AIRFOIL_COLUMNS`
    (frequency in Hz, angle of attack in degrees, chord length in m, free-stream velocity in m/s, suction-side
    displacement thickness in m; scaled sound pressure level in dB, the output). ``return_X_y``: X (1503, 5), y (1503,).
    """
    lines = _load("airfoil", "table", data_home, download).decode("ascii").splitlines()[1:]
    values = np.array([line.split("\t") for line in lines], dtype=np.float64)  # (1503, 6)
    frame = pd.DataFrame(values, columns=list(AIRFOIL_COLUMNS))
    return (values[:, :-1].copy(), values[:, -1].copy()) if return_X_y else frame


def parse_idx(content: bytes) -> np.ndarray:
    """An idx file (the MNIST format) of unsigned bytes: a big-endian header (0, 0, type 0x08, ndim), ndim uint32
    sizes, then the values."""
    if len(content) < 4 or content[:3] != b"\x00\x00\x08":
        raise DataError(f"not an idx file of unsigned bytes (header {content[:4].hex()})")
    ndim = content[3]
    shape = tuple(int(s) for s in np.frombuffer(content, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(content) - offset != int(np.prod(shape)):
        raise DataError(f"idx file of shape {shape} holds {len(content) - offset} values")
    return np.frombuffer(content, np.uint8, offset=offset).reshape(shape).copy()


def load_fashion_mnist(split: str = "train", data_home=None, download: bool = True):
    """Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): images uint8 (n, 28, 28) and labels int64 (n,) in 0..9;
    n = 60000 for ``split="train"``, 10000 for ``"test"``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = parse_idx(_load("fashion-mnist", f"{split}-images", data_home, download))
    labels = parse_idx(_load("fashion-mnist", f"{split}-labels", data_home, download)).astype(np.int64)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise DataError(f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} do not pair up")
    return images, labels
