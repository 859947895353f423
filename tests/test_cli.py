import json

import pytest

from moetheory import cli
from moetheory.reproduce import load_report


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_registered_papers(capsys, toy_registry):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "toy" in out and "A toy paper for tests" in out


def test_reproduce_prints_claims_and_exit_codes(capsys, toy_registry):
    code, out, _ = run(capsys, "reproduce", "toy", "--scale", "tiny", "--device", "cpu")
    assert code == 0 and "toy/mean-above" in out
    code, _, _ = run(capsys, "reproduce", "toy", "--scale", "tiny", "--device", "cpu", "--set", "fail=true")
    assert code == 1


def test_json_output_has_the_contract_fields(capsys, toy_registry, tmp_path):
    code, out, err = run(capsys, "reproduce", "toy", "--scale", "tiny", "--device", "cpu", "--json",
                         "--out", str(tmp_path))
    assert code == 0
    data = json.loads(out.strip().splitlines()[-1])
    assert {"paper", "scale", "device", "elapsed_s", "versions", "claims", "metrics"} <= set(data)
    assert set(data["claims"][0]) >= {"id", "statement", "paper_value", "reproduced", "holds"}
    assert data["scale"] == "tiny" and data["device"].startswith("cpu")
    saved = load_report("toy", "tiny", tmp_path)
    assert saved.config == {"n": 10, "threshold": 0.2, "fail": False} and saved.git_revision
    assert "wrote" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reproduce", "nope"], "paper must be one of"),
        (["reproduce", "toy", "--scale", "huge"], ("--scale", "'huge'", "tiny", "quick", "paper")),
        (["reproduce", "toy", "--device", "tpu"], ("--device", "'tpu'", "auto", "cpu", "cuda")),
        (["reproduce", "toy", "--set", "m=3"], "unknown field 'm' for ToyConfig; allowed: n, threshold, fail"),
        (["reproduce", "toy", "--set", "n=zero"], "--set n: cannot read 'zero' as int"),
        (["reproduce", "toy", "--set", "n=0"], "n must be an integer >= 1; got 0"),
        (["reproduce", "toy", "--set", "n"], "--set expects FIELD=VALUE"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["reproduce", "toy", "--threads", "0"], "--threads: threads must be an integer >= 1; got 0"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(capsys, toy_registry, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("moetheory: error:")
    for piece in (message,) if isinstance(message, str) else message:
        assert piece in err


def test_unknown_paper_lists_allowed_before_running_anything(capsys, toy_registry, tmp_path):
    code, _, err = run(capsys, "reproduce", "toy", "nope", "--out", str(tmp_path))
    assert code == 2 and "'toy'" in err
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_usage_error(capsys, toy_registry):
    code, _, err = run(capsys, "reproduce", "toy", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err
