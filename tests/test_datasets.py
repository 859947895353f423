"""moetheory.datasets: the real files load as the chapters expect (where they are provided), and on small synthetic
files registered with their own checksums: the search order, checksum errors, the offline error, a mocked download
written atomically, and the two formats of the Airfoil table."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from moetheory import datasets as ds

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOETHEORY_DATA") or ROOT.parent / "shared" / "data")  # CI sets MOETHEORY_DATA


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real cache, no $MOETHEORY_DATA, no network: each test sets what it needs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ds.ENV, raising=False)
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({}))
    monkeypatch.setattr(ds, "_VERIFIED", {})


def fake_urlopen(payloads: dict, calls: list | None = None):
    """urlopen serving ``payloads`` (url -> bytes); any other URL fails as it does offline."""
    def urlopen(url, timeout=None):
        if calls is not None:
            calls.append(url)
        if url not in payloads:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        return io.BytesIO(payloads[url])
    return urlopen


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CONTENT = b"synthetic content\x00\x01\x02" * 10
URLS = ("https://example.invalid/a/toy.bin.gz", "https://example.invalid/b/toy.bin.gz")


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A registered data set 'toy' of one gzipped file, and its directories: env, cache, system."""
    dirs = {k: tmp_path / k for k in ("env", "system", "home")}
    file = ds.DataFile("toy/toy.bin.gz", sha(CONTENT), URLS)
    monkeypatch.setitem(ds.REGISTRY, "toy", ds.DataSet("toy", {"bin": file}, ds._gunzip,
                                                       system_dirs=(str(dirs["system"]),), package="dataset-toy"))
    dirs["cache"] = tmp_path / "xdg" / "moetheory"
    return dirs


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- the real files (../shared/data, or wherever MOETHEORY_DATA points) --------------------------------------------

needs_shared = pytest.mark.skipif(not (SHARED / "airfoil_self_noise.tsv").is_file(),
                                  reason=f"real data not provided: set MOETHEORY_DATA (no {SHARED})")


@needs_shared
def test_real_airfoil(monkeypatch):
    monkeypatch.setenv(ds.ENV, str(SHARED))
    frame = ds.load_airfoil()
    assert frame.shape == (1503, 6) and tuple(frame.columns) == ds.AIRFOIL_COLUMNS
    assert (frame.dtypes == np.float64).all()
    assert frame.iloc[0].tolist() == [800, 0, 0.3048, 71.3, 0.00266337, 126.201]
    assert frame.iloc[-1].tolist() == [6300, 15.6, 0.1016, 39.6, 0.0528487, 104.204]
    X, y = ds.load_airfoil(return_X_y=True)
    assert X.shape == (1503, 5) and y.shape == (1503,) and np.array_equal(X, frame.to_numpy()[:, :5])


@needs_shared
def test_real_airfoil_is_its_own_canonical_form_and_the_uci_layout_maps_onto_it():
    raw = (SHARED / "airfoil_self_noise.tsv").read_bytes()
    assert ds.canonical_airfoil(raw) == raw  # so the registered checksum is also the file's plain sha256
    uci = b"\n".join(b"  ".join(line.split(b"\t")) for line in raw.split(b"\r\n")[1:])  # no header, spaces, LF
    assert ds.canonical_airfoil(uci) == raw


@needs_shared
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(monkeypatch, split, n):
    monkeypatch.setenv(ds.ENV, str(SHARED))
    images, labels = ds.load_fashion_mnist(split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9 and np.all(np.bincount(labels) == n // 10)
    assert images.max() == 255 and images.min() == 0 and 50 < images.mean() < 100  # mostly dark background
    assert images[:, 0, 0].max() < 64  # corners are background
    if split == "train":
        assert labels[:5].tolist() == [9, 0, 0, 3, 0]


# -- search order, checksums, errors (synthetic files) ----------------------------------------------------------------

def test_search_order_data_home_env_cache_system(toy, monkeypatch):
    gz = gzip.compress(CONTENT)
    system = put(toy["system"] / "toy.bin.gz", gz)  # a system package holds files by their base names
    assert ds.locate("toy")["bin"] == system
    cache = put(toy["cache"] / "toy/toy.bin.gz", gz)
    assert ds.locate("toy")["bin"] == cache
    env = put(toy["env"] / "toy/toy.bin.gz", gz)
    monkeypatch.setenv(ds.ENV, str(toy["env"]))
    assert ds.locate("toy")["bin"] == env
    home = put(toy["home"] / "toy/toy.bin.gz", gz)
    assert ds.locate("toy", data_home=toy["home"])["bin"] == home


def test_decompressed_copy_passes_the_same_checksum(toy, monkeypatch):
    """The checksum covers the content: an un-gzipped copy, or a differently compressed one, passes."""
    monkeypatch.setenv(ds.ENV, str(toy["env"]))
    plain = put(toy["env"] / "toy/toy.bin", CONTENT)
    assert ds.locate("toy")["bin"] == plain
    put(toy["env"] / "toy/toy.bin.gz", gzip.compress(CONTENT, compresslevel=1, mtime=12345))
    assert ds.locate("toy")["bin"] == toy["env"] / "toy/toy.bin.gz"


def test_checksum_mismatch_is_one_line_naming_the_file_and_both_digests(toy, monkeypatch):
    bad = put(toy["env"] / "toy/toy.bin.gz", gzip.compress(CONTENT + b"!"))
    put(toy["cache"] / "toy/toy.bin.gz", gzip.compress(CONTENT))  # a good copy later in the order: not a fallback
    monkeypatch.setenv(ds.ENV, str(toy["env"]))
    with pytest.raises(ds.ChecksumMismatch) as info:
        ds.locate("toy")
    message = str(info.value)
    assert "\n" not in message and str(bad) in message
    assert sha(CONTENT + b"!") in message and sha(CONTENT) in message


def test_missing_everywhere_offline_is_one_line_saying_how_to_get_it(toy, monkeypatch):
    calls = []
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({}, calls))
    with pytest.raises(ds.DataNotFound) as info:
        ds.locate("toy")
    message = str(info.value)
    assert calls == list(URLS)  # every source tried
    assert "\n" not in message and isinstance(info.value, ValueError)
    for part in ("data set toy", "toy/toy.bin.gz", "$MOETHEORY_DATA (unset)", str(toy["cache"]), str(toy["system"]),
                 "set MOETHEORY_DATA", "dataset-toy", URLS[0], "Name or service not known"):
        assert part in message, part


def test_download_is_verified_and_written_atomically_into_the_cache(toy, monkeypatch):
    gz, calls, renames = gzip.compress(CONTENT), [], []
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({URLS[1]: gz}, calls))  # the first mirror is down
    replace = os.replace

    def spy(src, dst):
        src, dst = Path(src), Path(dst)
        renames.append((src, dst))
        assert src.parent == dst.parent and src.name.endswith(".part") and src.read_bytes() == gz
        assert not dst.exists()  # nothing at the final name until the complete file is renamed there
        replace(src, dst)

    monkeypatch.setattr(ds.os, "replace", spy)
    target = toy["cache"] / "toy/toy.bin.gz"
    assert ds.locate("toy")["bin"] == target and target.read_bytes() == gz
    assert calls == list(URLS) and len(renames) == 1 and renames[0][1] == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["toy.bin.gz"]  # no temporary left
    assert ds.locate("toy")["bin"] == target and len(calls) == 2  # found in the cache: no second download


def test_download_into_data_home(toy, monkeypatch):
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({URLS[0]: gzip.compress(CONTENT)}))
    assert ds.locate("toy", data_home=toy["home"])["bin"] == toy["home"] / "toy/toy.bin.gz"
    assert not toy["cache"].exists()


def test_no_download_when_disabled(toy, monkeypatch):
    calls = []
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({URLS[0]: gzip.compress(CONTENT)}, calls))
    with pytest.raises(ds.DataNotFound, match="downloads disabled"):
        ds.locate("toy", download=False)
    assert calls == []


def test_download_with_a_wrong_checksum_writes_nothing(toy, monkeypatch):
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({URLS[0]: gzip.compress(b"tampered")}))
    with pytest.raises(ds.ChecksumMismatch, match=f"{URLS[0]}.*{sha(b'tampered')}.*{sha(CONTENT)}"):
        ds.locate("toy")
    assert not (toy["cache"] / "toy").exists() or not any((toy["cache"] / "toy").iterdir())


def test_failed_write_leaves_no_partial_file(toy, monkeypatch):
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({URLS[0]: gzip.compress(CONTENT)}))

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ds.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        ds.locate("toy")
    assert list((toy["cache"] / "toy").iterdir()) == []


def test_checksum_is_computed_once_per_file_version(toy, monkeypatch):
    path = put(toy["cache"] / "toy/toy.bin.gz", gzip.compress(CONTENT))
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(ds.hashlib, "sha256", lambda data=b"": hashed.append(1) or real(data))
    ds.locate("toy")
    ds.locate("toy")
    assert len(hashed) == 1
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # a new version of the file: verified again
    ds.locate("toy")
    assert len(hashed) == 2


def test_unknown_data_set():
    with pytest.raises(ValueError, match="unknown data set 'nope'; known: airfoil, fashion-mnist"):
        ds.locate("nope")


# -- the Airfoil table: two formats, one frame -----------------------------------------------------------------------

TSV = b"Freq\tAngle\tLength\tVel\tDispl\tPressure\r\n800\t0\t0.3048\t71.3\t0.00266337\t126.201\r\n" \
      b"6300\t15.6\t0.1016\t39.6\t0.0528487\t104.204\r\n"
UCI = b"800 \t0  0.3048\t71.3\t0.00266337\t126.201\n6300\t15.6\t0.1016 39.6\t0.0528487\t104.204\n\n"


@pytest.fixture
def small_airfoil(monkeypatch):
    file = ds.DataFile("airfoil_self_noise.tsv", sha(TSV), ("https://example.invalid/airfoil_self_noise.dat",),
                       ("airfoil_self_noise.dat",))
    monkeypatch.setitem(ds.REGISTRY, "airfoil", ds.DataSet("airfoil", {"table": file}, ds.canonical_airfoil,
                                                           store_content=True))
    return file


def test_uci_headerless_whitespace_parses_to_the_same_frame_as_the_tsv(small_airfoil, tmp_path):
    put(tmp_path / "a/airfoil_self_noise.tsv", TSV)
    put(tmp_path / "b/airfoil_self_noise.dat", UCI)  # the UCI original's name and layout
    ours, uci = ds.load_airfoil(data_home=tmp_path / "a"), ds.load_airfoil(data_home=tmp_path / "b")
    assert ours.equals(uci) and ours.shape == (2, 6) and ours["Pressure"].tolist() == [126.201, 104.204]
    assert ds.canonical_airfoil(UCI) == TSV
    assert ds.canonical_airfoil(TSV.replace(b"Freq", b"Frequency")) == TSV  # another copy's header: replaced


def test_uci_download_is_stored_as_the_canonical_tsv(small_airfoil, tmp_path, monkeypatch):
    monkeypatch.setattr(ds.urllib.request, "urlopen", fake_urlopen({small_airfoil.urls[0]: UCI}))
    frame = ds.load_airfoil()
    assert (tmp_path / "xdg/moetheory/airfoil_self_noise.tsv").read_bytes() == TSV and frame.shape == (2, 6)


def test_malformed_airfoil_row_is_one_line(small_airfoil, tmp_path):
    put(tmp_path / "airfoil_self_noise.tsv", TSV + b"1\t2\t3\t4\t5\r\n")
    with pytest.raises(ds.DataError, match="data row 3 has 5 fields, expected 6") as info:
        ds.load_airfoil(data_home=tmp_path)
    assert "\n" not in str(info.value)


# -- Fashion-MNIST: the idx format, the Debian layout ------------------------------------------------------------------

def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def small_fmnist(monkeypatch, tmp_path):
    """Five 28x28 training images (and labels) in the Debian package's layout, registered with their checksums."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.array([9, 0, 3, 3, 7], np.uint8)
    files = {}
    for key, name, array in (("train-images", "train-images-idx3-ubyte", images),
                             ("train-labels", "train-labels-idx1-ubyte", labels)):
        put(tmp_path / "debian" / f"{name}.gz", gzip.compress(idx(array)))
        files[key] = ds.DataFile(f"fashion-mnist/{name}.gz", sha(idx(array)), ())
    monkeypatch.setitem(ds.REGISTRY, "fashion-mnist", ds.DataSet(
        "fashion-mnist", files, ds._gunzip, system_dirs=(str(tmp_path / "debian"),), package="dataset-fashion-mnist"))
    return images, labels


def test_fashion_mnist_from_the_system_package(small_fmnist):
    images, labels = ds.load_fashion_mnist("train")
    assert images.dtype == np.uint8 and np.array_equal(images, small_fmnist[0]) and images.flags.writeable
    assert labels.dtype == np.int64 and labels.tolist() == [9, 0, 3, 3, 7]


def test_idx_parser_rejects_what_is_not_idx():
    assert ds.parse_idx(idx(np.arange(6).reshape(2, 3))).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ds.DataError, match="not an idx file"):
        ds.parse_idx(b"\x1f\x8b\x08\x00")
    with pytest.raises(ds.DataError, match=r"shape \(2, 3\) holds 5 values"):
        ds.parse_idx(idx(np.arange(6).reshape(2, 3))[:-1])


def test_fashion_mnist_split_is_checked():
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        ds.load_fashion_mnist("valid")

