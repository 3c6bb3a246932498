"""The batch runner, notebook parameters and the student-version tool."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_utils import running


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


def test_parse_parameters():
    assert running.parse_parameters(["epochs=3", "dataset=digits", "lr=1e-3", "smoke=True"]) == {
        "epochs": 3, "dataset": "digits", "lr": 1e-3, "smoke": True}
    with pytest.raises(ValueError, match="name=value"):
        running.parse_parameters(["epochs"])


def _notebook(path, *sources):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_series_discovery_runs_in_order_and_stops_at_first_failure(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_ok.ipynb", "x = 1", "open('ran_01', 'w').write(str(x))")
    _notebook(nbs / "02_bad.ipynb", "x = 1", "y = 2", "raise ValueError('boom in cell')")
    _notebook(nbs / "03_never.ipynb", "x = 1", "open('ran_03', 'w').write('x')")
    _notebook(nbs / "helper.ipynb", "x = 1")  # not numbered: not part of the series
    assert [p.name for p in running.discover(nbs)] == ["01_ok.ipynb", "02_bad.ipynb", "03_never.ipynb"]
    with pytest.raises(SystemExit) as exc:
        running.main(["--notebooks-dir", str(nbs), "--output-dir", str(tmp_path / "out"), "-p", "x=5"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "FAILED: 02_bad.ipynb, cell" in err and "ValueError: boom in cell" in err
    assert (nbs / "ran_01").read_text() == "5", "parameters were not injected"
    assert not (nbs / "ran_03").exists(), "the run went on after a failure"
    assert (tmp_path / "out" / "02_bad.ipynb").exists()
