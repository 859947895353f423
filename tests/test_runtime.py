import json
import os
import subprocess

import numpy as np
import pytest
import torch

from moetheory import checks, runtime


def test_auto_device_follows_environment(monkeypatch):
    monkeypatch.setenv("MOETHEORY_DEVICE", "cpu")
    assert runtime.resolve_device("auto").type == "cpu"
    monkeypatch.delenv("MOETHEORY_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="cuda.*not available"):
        runtime.resolve_device("cuda")


def test_cuda_resolves_to_the_indexed_current_device(monkeypatch):
    """Tensors report ``cuda:N``; an unindexed ``cuda`` made generators that no tensor's device equals."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert runtime.resolve_device("cuda") == torch.device("cuda", 1)
    assert runtime.resolve_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert runtime.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_same_device_compares_types_and_indices_only_where_both_have_one():
    assert runtime.same_device(torch.device("cuda"), torch.device("cuda", 0))
    assert runtime.same_device("cuda:1", torch.device("cuda"))
    assert runtime.same_device("cpu", torch.device("cpu"))
    assert not runtime.same_device("cuda:0", "cuda:1")
    assert not runtime.same_device("cpu", "cuda:0")


def test_bad_device_and_env_name_the_allowed_values(monkeypatch):
    with pytest.raises(ValueError, match="device must be one of 'auto', 'cpu', 'cuda'; got 'tpu'"):
        runtime.resolve_device("tpu")
    monkeypatch.setenv("MOETHEORY_DEVICE", "gpu")
    with pytest.raises(ValueError, match="MOETHEORY_DEVICE must be one of"):
        runtime.resolve_device("auto")


def test_seeding_makes_python_numpy_torch_repeat():
    def draw():
        g = runtime.seed_everything(7)
        return np.random.rand(), torch.rand(3).tolist(), torch.rand(2, generator=g).tolist()

    assert draw() == draw()
    with pytest.raises(ValueError, match="seed must be an integer"):
        runtime.seed_everything(-1)


def test_scales_and_threads():
    assert runtime.check_scale("quick") == "quick"
    with pytest.raises(ValueError, match="scale must be one of 'tiny', 'quick', 'paper'; got 'huge'"):
        runtime.check_scale("huge")
    assert runtime.set_threads(1) == 1
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        runtime.set_threads(0)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = runtime.write_json_atomic(tmp_path / "sub" / "r.json", {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        runtime.write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"a": [1, 2]}  # the old file survives a failed write
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left behind
    umask = os.umask(0o022)
    try:
        again = runtime.write_json_atomic(tmp_path / "mode.json", {})
    finally:
        os.umask(umask)
    assert again.stat().st_mode & 0o777 == 0o644  # readable like any new file, not mkstemp's private 0600


def test_provenance_fields():
    v = runtime.versions()
    assert {"python", "torch", "numpy", "sympy", "moetheory"} <= set(v)
    rev = runtime.git_revision()
    assert rev == "unknown" or len(rev.split("+")[0]) == 40


def test_git_revision_is_dirty_for_code_changes_but_not_for_records(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a-quick.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = runtime.git_revision(tmp_path)
    assert len(clean) == 40
    (tmp_path / "results" / "a-quick.json").write_text('{"new": 1}')  # a fresh record: still the same code
    assert runtime.git_revision(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert runtime.git_revision(tmp_path) == clean + "+dirty"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: checks.check_int("n", 2.5, 1), r"n must be an integer >= 1; got 2.5"),
        (lambda: checks.check_int("k", 5, 1, 3), r"k must be an integer in \[1, 3\]; got 5"),
        (lambda: checks.check_int("flag", True), r"flag must be an integer"),
        (lambda: checks.check_float("lr", 0.0, 0.0, low_open=True), r"lr must be a finite number > 0.0; got 0.0"),
        (lambda: checks.check_float("p", float("nan"), 0, 1), r"p must be a finite number in \[0, 1\]"),
        (lambda: checks.check_choice("act", "swish", ["relu"]), r"act must be one of 'relu'; got 'swish'"),
    ],
)
def test_checks_name_parameter_and_range(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_replace_config_rejects_unknown_fields():
    from conftest import ToyConfig

    cfg = runtime.replace_config(ToyConfig(), n=5)
    assert cfg.n == 5
    with pytest.raises(ValueError, match="ToyConfig field must be one of 'n', 'threshold', 'fail'; got 'm'"):
        runtime.replace_config(ToyConfig(), m=5)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        runtime.replace_config(ToyConfig(), n=0)
