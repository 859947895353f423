import json
import re
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from moetheory import cli, papers, runtime
from moetheory.ledger import NOT_REPORTED, NOT_RUN, Claim
from moetheory.reproduce import Report, load_report


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
        # a scale of another paper (chen2022's paper-extras): refused before anything runs, naming the paper
        (["reproduce", "toy", "--scale", "paper-extras"], ("scale must be one of 'tiny', 'quick', 'paper' for toy",
                                                            "got 'paper-extras'")),
        (["reproduce", "toy", "--device", "tpu"], ("--device", "'tpu'", "auto", "cpu", "cuda")),
        (["reproduce", "toy", "--set", "m=3"], "unknown field 'm' for ToyConfig; allowed: n, threshold, fail"),
        (["reproduce", "toy", "--set", "treshold=1"], ("toy: --set: unknown field 'treshold'",
                                                       "allowed: n, threshold, fail (did you mean 'threshold'?)")),
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


# --- --out: checked before any run, printed before written, replaced atomically -----------------------------------


@pytest.fixture
def ran(register, toy_registry):
    """Records every toy run, so that a test can prove nothing ran."""
    calls = []
    real_run = toy_registry.run

    def counting_run(config, device="auto", progress=False):
        calls.append(config)
        return real_run(config, device, progress)

    register(replace(toy_registry, run=counting_run))
    return calls


def test_out_that_is_a_file_is_refused_before_running(capsys, ran, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    code, out, err = run(capsys, "reproduce", "toy", "--scale", "tiny", "--out", str(target))
    assert code == 2 and out == "" and ran == []
    assert err.count("\n") == 1 and "--out" in err and "not a directory" in err


def test_out_that_cannot_be_written_is_refused_before_running(capsys, ran, tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli.tempfile, "TemporaryFile", denied)  # root can write anywhere: simulate a read-only DIR
    code, _, err = run(capsys, "reproduce", "toy", "--scale", "tiny", "--out", str(tmp_path))
    assert code == 2 and ran == [] and err.count("\n") == 1
    assert "--out: cannot write to" in err and "Permission denied" in err


def test_out_whose_report_path_is_a_directory_is_refused(capsys, ran, tmp_path):
    (tmp_path / "toy-tiny.json").mkdir()
    code, _, err = run(capsys, "reproduce", "toy", "--scale", "tiny", "--out", str(tmp_path))
    assert code == 2 and ran == [] and "toy-tiny.json' is a directory" in err


def test_out_is_created_and_an_existing_report_replaced(capsys, toy_registry, tmp_path):
    out = tmp_path / "new" / "dir"
    code, _, _ = run(capsys, "reproduce", "toy", "--scale", "tiny", "--out", str(out))
    assert code == 0 and (out / "toy-tiny.json").exists()
    (out / "toy-tiny.json").write_text("stale")
    code, _, err = run(capsys, "reproduce", "toy", "--scale", "tiny", "--out", str(out))
    assert code == 0 and load_report("toy", "tiny", out).paper == "toy"
    assert sorted(p.name for p in out.iterdir()) == ["toy-tiny.json"]  # no temporary file left behind
    assert f"wrote {out / 'toy-tiny.json'}" in err


def test_claims_are_printed_before_the_report_is_written(capsys, toy_registry, tmp_path, monkeypatch):
    def full_disk(self, out_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Report, "write", full_disk)
    code, out, err = run(capsys, "reproduce", "toy", "--scale", "tiny", "--out", str(tmp_path))
    assert code == 3 and "toy/mean-above" in out  # the finished run is on stdout even though the write failed
    assert err.count("\n") == 1 and err.startswith("moetheory: error: toy: --out") and "No space left" in err


def test_git_revision_is_taken_when_the_run_starts(capsys, toy_registry, register, tmp_path, monkeypatch):
    state = {"ran": False}
    real_run = toy_registry.run

    def run_then_edit(config, device="auto", progress=False):
        state["ran"] = True  # e.g. someone edits the tree while the run goes on
        return real_run(config, device, progress)

    register(replace(toy_registry, run=run_then_edit))
    monkeypatch.setattr(runtime, "git_revision", lambda *a: "after+dirty" if state["ran"] else "before")
    code, _, _ = run(capsys, "reproduce", "toy", "--scale", "tiny", "--out", str(tmp_path))
    assert code == 0 and load_report("toy", "tiny", tmp_path).git_revision == "before"


# --- exit 3: a failed run is one line, and never loses the other papers' work ----------------------------------------


def crashing(config, device="auto", progress=False):
    from moetheory.papers.wang2025 import manifolds

    return manifolds.sample_jump(1)  # fails deep inside the package, after validation


@pytest.fixture
def broken_registry(register, toy_registry):
    register(replace(toy_registry, name="broken", run=crashing))


def test_failed_run_is_one_line_exit_3_and_the_other_papers_still_report(capsys, broken_registry, tmp_path,
                                                                          monkeypatch):
    monkeypatch.delenv(cli.ENV_TRACEBACK, raising=False)
    code, out, err = run(capsys, "reproduce", "broken", "toy", "--scale", "tiny", "--out", str(tmp_path))
    assert code == 3
    lines = [line for line in err.splitlines() if not line.startswith("wrote")]
    expected = (r"moetheory: error: broken: moetheory\.papers\.wang2025\.manifolds\.sample_jump \(line \d+\): "
                r"ValueError: n must be an integer >= 2; got 1")
    assert len(lines) == 1 and re.fullmatch(expected, lines[0])
    assert "Traceback" not in err
    assert "toy/mean-above" in out and load_report("toy", "tiny", tmp_path) is not None  # finished work is kept
    assert load_report("broken", "tiny", tmp_path) is None


def test_failed_run_with_a_failing_claim_still_exits_3(capsys, broken_registry):
    code, _, _ = run(capsys, "reproduce", "toy", "broken", "--scale", "tiny", "--set", "fail=true")
    assert code == 3  # a crash never passes for a failed claim (1), let alone for success


@pytest.mark.parametrize("how", ["flag", "env"])
def test_traceback_on_request(capsys, broken_registry, monkeypatch, how):
    argv = ["reproduce", "broken", "--scale", "tiny"]
    if how == "flag":
        argv.append("--traceback")
    else:
        monkeypatch.setenv(cli.ENV_TRACEBACK, "1")
    code, _, err = run(capsys, *argv)
    assert code == 3 and "Traceback (most recent call last)" in err and "in sample_jump" in err
    assert err.splitlines()[-1].startswith("moetheory: error: broken: ")


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_help_names_the_papers_and_where_to_find_the_rest(capsys):
    out = help_text(capsys)
    assert "`" not in out and "reproduce --help" in out
    for name, title in papers.TITLES.items():
        assert f"  {name:<12} {title}\n" in out


def test_reproduce_help_lists_papers_scales_and_the_fields_set_accepts(capsys):
    out = help_text(capsys, "reproduce")
    assert "`" not in out
    for name, title in papers.TITLES.items():
        assert f"  {name:<12} {title}\n" in out
    for scale in ("tiny", "quick", "paper"):
        assert re.search(rf"\n  {scale} +\S", out)
    fields = out[out.index("--set FIELD=VALUE overrides"):]
    for name in papers.TITLES:
        assert f"\n  {name}:\n" in fields
    for field in ("n_seeds=int", "settings=str,...", "ablation=bool", "eta=float,...", "layout=str",
                  "regimes=(not settable)"):
        assert re.search(rf"\s{re.escape(field)}(\s|$)", fields), field


def test_help_lists_the_exit_codes_in_plain_text(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--help"])
    out = capsys.readouterr().out
    epilog = out[out.index("exit status:"):]
    for code in ("0", "1", "2", "3"):
        assert f"\n  {code}  " in epilog
    assert "`" not in epilog and "atomically" in epilog and "writable directory" in epilog


# --- not run is not failed -------------------------------------------------------------------------------------------


def test_claim_that_did_not_run_is_not_a_failure(capsys, toy_registry, register):
    def with_skipped(result):
        return [*toy_registry.claims(result),
                Claim("toy/skipped", "an experiment this config leaves out", NOT_REPORTED, NOT_RUN, None,
                      provenance="not read")]

    register(replace(toy_registry, claims=with_skipped))
    code, out, _ = run(capsys, "reproduce", "toy", "--scale", "tiny", "--json")
    assert code == 0
    skipped = [c for c in json.loads(out)["claims"] if c["id"] == "toy/skipped"]
    assert skipped[0]["holds"] is None and skipped[0]["reproduced"] == NOT_RUN


CHEN_FAST = ["--set", "moe_epochs=1", "--set", "bound_epochs=1", "--set", "n_train=64", "--set", "n_test=64",
             "--set", "n_seeds=1", "--set", "bound_activations=linear", "--set", "ablation=false"]


def test_json_stdout_stays_json_when_a_run_prints(capsys, register):
    """A run's own notice (a missing data set's, say) goes to stderr: --json's stdout is one JSON object."""
    from dataclasses import replace

    from conftest import TOY, toy_run

    def run_printing(config, device="auto", progress=False):
        print("analogue not run: data set missing")
        return toy_run(config, device, progress)

    register(replace(TOY, run=run_printing))
    code, out, err = run(capsys, "reproduce", "toy", "--scale", "tiny", "--device", "cpu", "--json")
    assert json.loads(out)["paper"] == "toy"
    assert "analogue not run: data set missing" in err


def test_chen_single_models_not_trained_are_not_run_not_failed(capsys):
    code, out, _ = run(capsys, "reproduce", "chen2022", "--scale", "tiny", "--device", "cpu", "--no-progress",
                       "--json", "--set", "settings=S2", *CHEN_FAST)
    claims = {c["id"]: c for c in json.loads(out)["claims"]}
    for slug in ("nonlinear", "linear"):
        single = claims[f"chen2022/single-{slug}-accuracy"]
        assert single["holds"] is None and single["reproduced"] == NOT_RUN
    assert code == (0 if all(c["holds"] is not False for c in claims.values()) else 1)


def test_kawata_task_exponent_is_claimed_for_any_student_activation(capsys):
    # the task's exponent along w_g is a property of the task: it runs for a ReLU student too, whose own neuron-level
    # exponent (the shift identity needs a polynomial link) is marked "not derived" beside it
    code, out, _ = run(capsys, "reproduce", "kawata2025", "--scale", "tiny", "--device", "cpu", "--no-progress",
                       "--json", "--set", "activation=relu", "--set", "more_clusters=", "--set", "stage1_steps=2",
                       "--set", "stage2_steps=2", "--set", "stage3_steps=2")
    claim = {c["id"]: c for c in json.loads(out)["claims"]}["kawata2025/global-exponent-rises"]
    assert code in (0, 1) and claim["holds"] is True
    assert claim["reproduced"].startswith("task exponent 4 along w_g (per-cluster k* = 3)")
    assert claim["reproduced"].endswith("a vanilla relu neuron: not derived")


# --- --set for tuples, and every Config's limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "item", "value"),
    [
        ("chen2022", "settings=S2", ("S2",)),
        ("chen2022", 'settings="S2"', ("S2",)),
        ("chen2022", "settings=S1,S2", ("S1", "S2")),
        ("chen2022", 'settings="S1", "S3"', ("S1", "S3")),
        ("chen2022", "single_settings=", ()),
        ("hermite", "dims=8,16,32", (8, 16, 32)),
        ("hermite", "dims=[8, 16]", (8, 16)),
        ("hermite", "eta=1,0.5,0.25", (1.0, 0.5, 0.25)),
        ("kawata2025", "more_clusters=3", (3,)),  # a single value for a tuple field is a 1-tuple
        ("hermite", "dims=8", (8,)),
        ("hermite", "eta=0.5", (0.5,)),
        ("chen2022", "bound_activations=relu", ("relu",)),
    ],
)
def test_set_reads_tuples_as_comma_separated_values(name, item, value):
    config = papers.get(name).config("tiny")
    assert cli.parse_overrides(config, [item]) == {item.partition("=")[0]: value}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["wang2025", "--set", "test_points=1"], "wang2025: --set: test_points must be an integer >= 2; got 1"),
        (["wang2025", "--set", "n_train=1"], "n_train must be an integer >= 2; got 1"),
        (["wang2025", "--set", "construction_dim=1"], "construction_dim must be an integer >= 2; got 1"),
        (["wang2025", "--set", "exp2_widths=4,4"], "exp2_widths must hold at least two distinct integers >= 2"),
        (["hermite", "--set", "exponents=2,2,3"], "exponents must be distinct; got (2, 2, 3)"),
        (["hermite", "--set", "max_factor=1e300"], "max_factor / eta * d^(k-1)"),
        (["kawata2025", "--set", "ridge=0"], "ridge must be a finite number >= 1e-12; got 0.0"),
        (["kawata2025", "--set", "seed=4294967296"], "seed must be an integer in [0, 4294967295]"),
        (["kawata2025", "--set", "rho=1e300"], "rho must be a finite number in [0.0, 1000000.0]"),
        (["kawata2025", "--set", "layout=orthogonal", "--set", "d=4"], "d must be >= 5 for 2 clusters"),
        (["chen2022", "--set", "bound_activations="], "bound_activations must name at least one activation"),
        (["chen2022", "--set", "seed=4294967296"], "seed must be an integer in [0, 4294967295]"),
        (["chen2022", "--set", "settings=S5"], "settings must be one of 'S1', 'S2', 'S3', 'S4'; got 'S5'"),
        (["makkuva2019", "--set", "n_experts=6"], "n_experts must be an integer in [2, 5]; got 6"),
        (["makkuva2019", "--set", "noise_std=1e-300"], "noise_std must be a finite number in [1e-06, 1000000.0]"),
        (["makkuva2019", "--set", "regimes=1"], "--set regimes: a tuple of Regime cannot be set"),
        (["hermite", "--set", "dims=8,x"], "--set dims: cannot read '8,x' as comma-separated int values"),
    ],
)
def test_config_limits_are_usage_errors_naming_the_field(capsys, argv, message):
    code, out, err = run(capsys, "reproduce", *argv, "--scale", "tiny", "--device", "cpu")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("moetheory: error:") and message in err


# --- start-up: --help and list import nothing heavy; a broken paper module breaks only itself ---------------------


def test_help_and_list_import_neither_torch_nor_pandas():
    """Structural, not timed (benchmarks/cli_startup.py measures): what makes --help and list slow is importing torch,
    numpy or pandas, so they must not be imported at all."""
    script = """
import contextlib, io, sys
from moetheory import cli
cli.build_parser()
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert cli.main(["list"]) == 0
    for argv in (["--help"], ["list", "--help"]):
        try:
            cli.main(argv)
        except SystemExit:
            pass
assert "chen2022" in out.getvalue()
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "numpy", "pandas", "sympy", "scipy"})))
"""
    root = Path(cli.__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


@pytest.fixture
def broken_wang(monkeypatch):
    """wang2025's module fails to import (as a missing dependency or a syntax error would make it)."""
    real = papers.importlib.import_module

    def import_module(name, package=None):
        if name == "moetheory.papers.wang2025":
            raise ModuleNotFoundError("No module named 'a_missing_dependency'")
        return real(name, package)

    monkeypatch.delitem(sys.modules, "moetheory.papers.wang2025", raising=False)
    monkeypatch.setattr(papers, "importlib", types.SimpleNamespace(import_module=import_module))


def test_a_broken_paper_module_breaks_only_itself(capsys, broken_wang, toy_registry):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == "" and all(name in out for name in ("wang2025", "chen2022", "toy"))
    with pytest.raises(papers.PaperImportError, match=r"cannot import paper 'wang2025' \(module "
                       r"moetheory\.papers\.wang2025\): ModuleNotFoundError: No module named 'a_missing_dependency'"):
        papers.get("wang2025")
    assert papers.get("toy") is toy_registry and papers.get("hermite").name == "hermite"
    with pytest.raises(papers.PaperImportError):
        papers.registry()  # all of them: wang2025 too
    code, out, err = run(capsys, "reproduce", "wang2025", "toy", "--scale", "tiny", "--device", "cpu")
    assert code == 3 and "toy/mean-above" in out  # the other paper still ran
    assert err.count("\n") == 1 and err.startswith("moetheory: error: wang2025: ")
    assert "cannot import paper 'wang2025'" in err and "a_missing_dependency" in err
    out = help_text(capsys, "reproduce")
    assert "\n  wang2025: (fields unknown: cannot import paper 'wang2025'" in out and "\n  hermite:\n" in out


def test_registered_titles_are_the_modules_own_and_every_module_is_registered():
    import pkgutil

    modules = {info.name for info in pkgutil.iter_modules(papers.__path__)}
    assert set(papers.TITLES) == modules
    assert list(papers.TITLES) == sorted(papers.TITLES)
    for name, title in papers.TITLES.items():
        paper = papers.get(name)
        assert (paper.name, paper.title) == (name, title)
    assert list(papers.registry()) == list(papers.TITLES)


def test_unknown_paper_names_the_registered_ones():
    with pytest.raises(ValueError, match="paper must be one of 'chen2022', 'hermite'"):
        papers.get("nope")
