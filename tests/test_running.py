"""The batch runner and notebook parameters: typed -p values (one rule with param()), smoke outputs kept out of the
repository, IPC kernels (no TCP warning, works without loopback), one-line failures. Tiny generated notebooks."""

import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_utils import running
from course_utils.paths import REPO_FIGURES, REPO_ROOT

PARAMS = 'from course_utils.running import param\n\nsmoke = param("smoke", False)\nseed = param("seed", 0)\n'
PROBE = ("import json\nfrom course_utils.paths import figures_dir, results_path\n"
         "figures_dir().mkdir(parents=True, exist_ok=True)\n"
         "(figures_dir() / 'zz_runner_test_probe.txt').write_text('smoke run')\n"
         "json.dump({'smoke': smoke, 'seed': seed, 'figures': str(figures_dir()), 'results': str(results_path())},"
         " open('probe.json', 'w'))")


def make_notebook(path, *sources):
    """A notebook whose first cell is tagged ``parameters``."""
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_param_reads_environment_with_types(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    monkeypatch.setenv("COURSE_EPOCHS", "7")
    monkeypatch.setenv("COURSE_DATASET", "digits")
    assert running.param("smoke", False) is True
    assert running.param("epochs", 3) == 7
    assert running.param("dataset", "mnist_5k") == "digits"
    assert running.param("seed", 0) == 0
    monkeypatch.setenv("COURSE_SMOKE", "maybe")
    with pytest.raises(ValueError, match="COURSE_SMOKE='maybe'"):
        running.param("smoke", False)
    monkeypatch.setenv("COURSE_EPOCHS", "many")
    with pytest.raises(ValueError, match="COURSE_EPOCHS='many'"):
        running.param("epochs", 3)
    with pytest.raises(ValueError, match="name='se-ed'"):
        running.param("se-ed", 0)


@pytest.mark.parametrize("raw, default, expected", [
    ("false", True, False), ("0", True, False), ("TRUE", False, True), ("on", False, True), ("", True, False),
    ("3", 0, 3), (" 3 ", 0, 3), ("2", 0.5, 2.0), ("1e-3", 0.1, 1e-3), ("digits", "mnist", "digits"),
    ("[1, 2]", [0], [1, 2]), ("None", None, None), ("text", None, "text"), ("4", None, 4),
])
def test_convert_is_the_one_rule(monkeypatch, raw, default, expected):
    value = running.convert(raw, default, "-p x")
    assert value == expected and type(value) is type(expected)
    monkeypatch.setenv("COURSE_X", raw)
    assert running.param("x", default) == value, "param() and -p disagree"


@pytest.mark.parametrize("raw, default, match", [
    ("maybe", False, "-p x='maybe' is not a boolean"), ("1.5", 0, "not a valid int"), ("True", 0, "not a valid int"),
    ("nan", 0.1, "not a valid finite float"), ("inf", 0.1, "finite"), ("x", [0], "not a valid list"),
])
def test_convert_refuses(raw, default, match):
    with pytest.raises(ValueError, match=match):
        running.convert(raw, default, "-p x")


def test_parse_parameters_and_defaults_from_the_parameters_cell(tmp_path):
    assert running.parse_parameters(["epochs=3", "dataset=digits", "lr=1e-3", "smoke=True"]) == {
        "epochs": "3", "dataset": "digits", "lr": "1e-3", "smoke": "True"}
    make_notebook(tmp_path / "01_x.ipynb", PARAMS + 'lr = 0.1\nname = "a"  # a comment\nwhen = compute()\n'
                  'size = param("size", (1, 2))', "x = 1")
    assert running.notebook_parameters(tmp_path / "01_x.ipynb") == {
        "smoke": False, "seed": 0, "lr": 0.1, "name": "a", "when": None, "size": (1, 2)}


def test_series_discovery_runs_in_order_and_stops_at_first_failure(tmp_path, capfd):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    make_notebook(nbs / "01_ok.ipynb", "x = 1", "open('ran_01', 'w').write(repr(x))")
    make_notebook(nbs / "02_bad.ipynb", "x = 1", "y = 2", "raise ValueError('boom in cell')")
    make_notebook(nbs / "03_never.ipynb", "x = 1", "open('ran_03', 'w').write('x')")
    make_notebook(nbs / "helper.ipynb", "x = 1")  # not numbered: not part of the series
    assert [p.name for p in running.discover(nbs)] == ["01_ok.ipynb", "02_bad.ipynb", "03_never.ipynb"]
    with pytest.raises(SystemExit) as exc:
        running.main(["--notebooks-dir", str(nbs), "--output-dir", str(tmp_path / "out"), "-p", "x=5"])
    assert exc.value.code == 1
    err = capfd.readouterr().err
    failure = [line for line in err.splitlines() if line.strip()]
    assert len(failure) == 1, f"not one line: {err}"
    assert "FAILED: 02_bad.ipynb, cell" in err and "ValueError: boom in cell" in err and "out/02_bad.ipynb" in err
    assert "without encryption" not in err, "a kernel ran over TCP"
    assert (nbs / "ran_01").read_text() == "5", "parameters were not injected as the notebook's type"
    assert not (nbs / "ran_03").exists(), "the run went on after a failure"
    assert (tmp_path / "out" / "02_bad.ipynb").exists()


def _probe_run(tmp_path, *args):
    nbs = tmp_path / "nbs"
    nbs.mkdir(exist_ok=True)
    make_notebook(nbs / "01_probe.ipynb", PARAMS, PROBE)
    assert running.main(["--notebooks-dir", str(nbs), "--output-dir", str(tmp_path / "out"), *args]) == 0
    return json.loads((nbs / "probe.json").read_text())


def test_false_means_false(tmp_path):
    probe = _probe_run(tmp_path, "-p", "smoke=false", "-p", "seed=3")
    assert probe["smoke"] is False and probe["seed"] == 3


def test_smoke_via_parameter_never_writes_the_repository_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_FIGURES_DIR")
    monkeypatch.delenv("COURSE_RESULTS_PATH")
    leaked = REPO_FIGURES / "zz_runner_test_probe.txt"
    try:
        probe = _probe_run(tmp_path, "-p", "smoke=1")
    finally:
        repo_written = leaked.exists()
        leaked.unlink(missing_ok=True)
    assert not repo_written, "a smoke run wrote into the repository's figures/"
    assert probe["smoke"] is True
    out = (tmp_path / "out").resolve()
    assert probe["figures"] == str(out / "figures") and probe["results"] == str(out / "results.json")
    assert (out / "figures" / "zz_runner_test_probe.txt").exists()


def _fake_kernels(tmp_path, monkeypatch):
    for name, argv in {"missing": ["/nonexistent/python", "-f", "{connection_file}"],
                       "dies": [sys.executable, "-c", "import sys; sys.exit(3)"]}.items():
        (tmp_path / "jp" / "kernels" / name).mkdir(parents=True)
        spec = {"argv": argv, "display_name": name, "language": "python"}
        (tmp_path / "jp" / "kernels" / name / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp"))


@pytest.mark.parametrize("kernel, message", [
    ("missing", "FAILED: 01_ok.ipynb: the Jupyter kernel 'missing' could not start (FileNotFoundError:"),
    ("dies", "FAILED: 01_ok.ipynb: the kernel died (RuntimeError: Kernel died before replying to kernel_info)"),
])
def test_kernel_that_cannot_start_is_one_line(tmp_path, monkeypatch, capfd, kernel, message):
    _fake_kernels(tmp_path, monkeypatch)
    make_notebook(tmp_path / "01_ok.ipynb", "x = 1")
    with pytest.raises(SystemExit) as exc:
        running.main(["--notebooks-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"), "--kernel", kernel])
    assert exc.value.code == 1
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(message), err


def _unshare() -> list[str] | None:
    """A command prefix that runs a program without network (not even loopback), or None."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


@pytest.mark.skipif(_unshare() is None, reason="unshare -n is not available here")
def test_runner_works_without_any_network(tmp_path):
    make_notebook(tmp_path / "01_ok.ipynb", "x = 1", "open('ran', 'w').write(repr(x))")
    cmd = [*_unshare(), sys.executable, "-m", "course_utils.running", "--notebooks-dir", str(tmp_path),
           "--output-dir", str(tmp_path / "out"), "-p", "x=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ran").read_text() == "2"
    assert "without encryption" not in proc.stderr
