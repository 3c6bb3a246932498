"""Bad runner input fails before any notebook runs, in one line on stderr naming what is wrong and what is allowed;
smoke mode, however asked for, keeps its outputs away from the repository. No kernel is started here."""

import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_utils import running
from course_utils import storage as course_io
from course_utils.paths import REPO_FIGURES, REPO_RESULTS

CELL_01 = 'from course_utils.running import param\nsmoke = param("smoke", False)\nseed = param("seed", 0)\n' \
          'figures_dir = param("figures_dir", "")'
CELL_02 = 'smoke = False\nseed = 0\ntau = 0.4'
NOTHING = "open('ran', 'w').write('a notebook ran')"


@pytest.fixture
def series(tmp_path):
    """Two tiny numbered notebooks; 02 alone has ``tau``."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, params in (("01_a.ipynb", CELL_01), ("02_b.ipynb", CELL_02)):
        nb = new_notebook(cells=[new_code_cell(params), new_code_cell(NOTHING)])
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbs / name)
    return nbs


def fails(series, capsys, *argv, notebooks_dir=None):
    """Run the CLI expecting a refusal: exit 2, one line on stderr, nothing executed; returns the message."""
    out = series.parent / "out"
    args = ["--notebooks-dir", str(notebooks_dir or series)]
    args += [] if "--output-dir" in argv else ["--output-dir", str(out)]
    assert running.main([*args, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("course-run: error: "), err
    assert not (series / "ran").exists(), "a notebook ran despite bad input"
    return err[0].removeprefix("course-run: error: ")


PARAMETERS = "parameters: smoke, seed, figures_dir, tau"


@pytest.mark.parametrize("argv, message", [
    (["--only", "01,99"], "--only 99: no notebook 99 in the series (01, 02)"),
    (["--only", "99"], "--only 99: no notebook 99 in the series (01, 02)"),
    (["--only", "98,99,01"], "--only 98,99: no notebook 98, 99 in the series (01, 02)"),
    (["--only", "x1"], "--only x1: not a notebook number (use e.g. --only 01,02); the series is 01, 02"),
    (["--only", " , "], "--only ' , ': not a notebook number (use e.g. --only 01,02); the series is 01, 02"),
    (["-p", "se_ed=1"], f"-p se_ed=1: no notebook has a parameter 'se_ed'; {PARAMETERS}"),
    (["-p", "=3"], f"-p =3: the parameter name is missing; {PARAMETERS}"),
    (["-p", "se-ed=3"], f"-p se-ed=3: 'se-ed' is not a valid parameter name; {PARAMETERS}"),
    (["-p", "seed"], f"-p seed: not of the form NAME=VALUE; {PARAMETERS}"),
    (["-p", "seed=1", "-p", "seed=2"], "-p seed is given twice (seed=1 and seed=2); give it once"),
    (["-p", "seed=abc"], "-p seed='abc' is not a valid int (the default is 0) (for 01_a.ipynb)"),
    (["-p", "tau=fast"], "-p tau='fast' is not a valid finite float (the default is 0.4) (for 02_b.ipynb)"),
    (["-p", "smoke=maybe"], "-p smoke='maybe' is not a boolean; use 1/0, true/false, yes/no or on/off "
                            "(for 01_a.ipynb)"),
    (["--only", "01", "-p", "tau=1"], "-p tau=1: no selected notebook (01) has a parameter 'tau'; parameters: smoke, "
                                      "seed, figures_dir"),
    (["--smoke", "-p", "smoke=false"], "--smoke and -p smoke=false contradict each other; give only one"),
    (["--kernel", "nope"], "--kernel nope: no such Jupyter kernel; installed: "),
    (["--timeout", "0"], "--timeout 0: must be a positive number of seconds per cell"),
])
def test_bad_arguments(series, capsys, argv, message):
    assert fails(series, capsys, *argv).startswith(message)
    assert not (series.parent / "out").exists(), "the run created its output folder before refusing"


def test_bad_folders(series, capsys, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert fails(series, capsys, notebooks_dir=tmp_path / "none") == \
        f"--notebooks-dir {tmp_path / 'none'} does not exist"
    assert fails(series, capsys, notebooks_dir=tmp_path / "file") == \
        f"--notebooks-dir {tmp_path / 'file'} is a file, not a folder"
    (tmp_path / "empty").mkdir()
    assert fails(series, capsys, notebooks_dir=tmp_path / "empty") == \
        f"--notebooks-dir {tmp_path / 'empty'}: no notebooks named {running.NOTEBOOK_GLOB} in it"
    assert fails(series, capsys, "--output-dir", str(tmp_path / "file")) == \
        f"--output-dir {tmp_path / 'file'} is a file, not a folder"
    assert fails(series, capsys, "--output-dir", str(tmp_path / "file" / "sub")) == \
        f"--output-dir {tmp_path / 'file' / 'sub'} cannot be created: {tmp_path / 'file'} is a file"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("COURSE_RESULTS_PATH", str(tmp_path / "store"))
    assert fails(series, capsys) == f"COURSE_RESULTS_PATH: results store {tmp_path / 'store'} is a folder, not a " \
                                    "file; remove it or choose another path"
    monkeypatch.setenv("COURSE_RESULTS_PATH", str(tmp_path / "results.json"))
    assert fails(series, capsys, "-p", "figures_dir=" + str(tmp_path / "file")) == \
        f"-p figures_dir: figures folder {tmp_path / 'file'} is a file, not a folder"

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(course_io.tempfile, "mkstemp", refuse)  # a read-only folder, even for root
    assert fails(series, capsys, "--output-dir", str(tmp_path / "ro")) == \
        f"--output-dir {tmp_path / 'ro'} is not writable (Permission denied)"


def test_bad_environment(series, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "maybe")
    assert fails(series, capsys) == "COURSE_SMOKE='maybe' is not a boolean; use 1/0, true/false, yes/no or on/off"


def plan(series, *argv):
    return running.build_plan(running.parse_args(["--notebooks-dir", str(series), "--output-dir",
                                                  str(series.parent / "out"), *argv]))


@pytest.mark.parametrize("argv, env", [
    (["--smoke"], {}), (["-p", "smoke=true"], {}), (["-p", "smoke=1"], {}), ([], {"COURSE_SMOKE": "1"}),
    (["--smoke", "-p", "smoke=yes"], {}),
])
def test_smoke_however_asked_writes_beside_the_executed_notebooks(series, monkeypatch, argv, env):
    monkeypatch.delenv("COURSE_FIGURES_DIR")  # no explicit location: the defaults decide
    monkeypatch.delenv("COURSE_RESULTS_PATH")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = plan(series, *argv)
    out = (series.parent / "out").resolve()
    assert p.smoke and p.environment["COURSE_SMOKE"] == "1"
    assert p.environment["COURSE_FIGURES_DIR"] == str(out / "figures")
    assert p.environment["COURSE_RESULTS_PATH"] == str(out / "results.json")
    assert p.parameters["01_a.ipynb"]["smoke"] is True and p.parameters["02_b.ipynb"]["smoke"] is True


def test_parameter_beats_environment(series, monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    p = plan(series, "-p", "smoke=false")
    assert not p.smoke and p.environment["COURSE_SMOKE"] == "0" and p.parameters["01_a.ipynb"]["smoke"] is False


@pytest.mark.parametrize("how", ["env-figures", "env-results", "param"])
def test_smoke_refuses_the_repository_outputs(series, capsys, monkeypatch, how):
    if how == "env-figures":
        monkeypatch.setenv("COURSE_FIGURES_DIR", str(REPO_FIGURES))
        argv = ["--smoke"]
    elif how == "env-results":
        monkeypatch.setenv("COURSE_RESULTS_PATH", str(REPO_RESULTS))
        argv = ["-p", "smoke=1"]
    else:
        argv = ["--smoke", "-p", f"figures_dir={REPO_FIGURES / 'sub'}"]
    assert "a smoke run never writes into the repository's" in fails(series, capsys, *argv)


def test_parameter_of_some_notebooks_goes_to_those_only(series, monkeypatch):
    p = plan(series, "-p", "tau=0.5", "-p", "seed=2")
    assert p.parameters["02_b.ipynb"] == {"tau": 0.5, "seed": 2, "smoke": False}
    assert p.parameters["01_a.ipynb"] == {"seed": 2, "smoke": False}
    assert p.notes == ["-p tau only goes to 02 (the others have no such parameter)"]


def test_output_parameters_are_resolved_where_the_run_starts(series, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    p = plan(series, "-p", "figures_dir=figs")
    assert p.parameters["01_a.ipynb"]["figures_dir"] == str(tmp_path.resolve() / "figs")
    assert p.environment["COURSE_FIGURES_DIR"] == str(tmp_path.resolve() / "figs"), "02 would not follow it"
    assert os.path.isdir(tmp_path / "figs")


@pytest.mark.parametrize("call, match", [
    (lambda s: running.run_series(running.discover(s), s.parent / "o", {}, timeout=0), "timeout=0"),
    (lambda s: running.run_series(running.discover(s), s.parent / "o", {}, kernel_name=""), "kernel_name=''"),
    (lambda s: running.run_series([str(p) for p in running.discover(s)], s.parent / "o", {}), "list of Paths"),
    (lambda s: running.parse_parameters([3]), "items=\\[3\\]"),
    (lambda s: running.select(running.discover(s), 1), "only=1"),
    (lambda s: running.param("", 0), "name=''"),
    (lambda s: running.discover(None), "notebooks_dir=None"),
    (lambda s: running.configure_outputs(figures_dir=3), "figures_dir=3"),
    (lambda s: running.convert(1, 0, "-p x"), "the value must be text"),
])
def test_public_functions_reject_bad_arguments(series, call, match):
    with pytest.raises(ValueError, match=match):
        call(series)
    assert not (series.parent / "o").exists()


def test_one_parameter_string_is_one_parameter():
    assert running.parse_parameters("seed=1") == {"seed": "1"}
