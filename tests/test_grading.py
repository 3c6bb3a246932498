"""The course's grader: release, rebuild-from-instructor grading of hostile submissions, validate, self-check, CLI.

The fixture lab (tests/fixtures/grading/instructor) has a set-up cell, three exercises (exercise 2: 2 points and
hidden tests, exercise 3: two solution blocks) and a slow cell the grader must never run. Every hostile submission
below is built from its released version and graded by the real grader, all in one ``grade`` call with 2 jobs.
"""

from __future__ import annotations

import copy
import socket
import threading
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from course_utils import grading
from course_utils.grading import api, cli
from course_utils.grading.core import with_tokens
from course_utils.grading.submission import read_submission, suspicious
from course_utils.grading.surgery import extract_solutions, split_solutions
from course_utils.paths import REPO_ROOT

INSTRUCTOR = Path(__file__).parent / "fixtures" / "grading" / "instructor"
FIXTURE = INSTRUCTOR / "01_fixture.ipynb"
CORRECT = {"ex1": "    return x * x", "ex2": "    return sum(values) / len(values)",
           "ex3": "    if x < lo:\n        return lo\n    return min(x, hi)"}
TIMEOUT_CELL = 10


def _released(name: str = "01_fixture.ipynb") -> nbformat.NotebookNode:
    return grading.student_notebook(grading.instructor_layout(INSTRUCTOR / name))


def _fill(nb: nbformat.NotebookNode, **solutions: str) -> nbformat.NotebookNode:
    """A student's notebook: each named exercise cell's stub lines replaced by the given code."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.id in solutions:
            stub = next(line for line in cell.source.split("\n") if "NotImplementedError" in line)
            cell.source = "\n".join(line for line in cell.source.split("\n") if line != stub) \
                .replace("):", "):\n" + solutions[cell.id], 1)
    return nb


def _cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.id == cell_id)


# ---------------------------------------------------------------- surgery, release, reading submissions


def test_strip_solutions_keeps_indentation_and_rest():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\nprint(f)"
    out = grading.strip_solutions(src)
    assert "return x + 1" not in out and f"    {grading.STUB}" in out and out.endswith("print(f)")
    with pytest.raises(ValueError, match="unbalanced"):
        grading.strip_solutions("### BEGIN SOLUTION\nx = 1")


def test_release_strips_solutions_and_hidden_tests_and_keeps_ids(tmp_path):
    written = grading.release(tmp_path / "student", INSTRUCTOR)
    assert [p.name for p in written] == ["01_fixture.ipynb", "02_fixture.ipynb"]
    teacher, student = nbformat.read(FIXTURE, 4), nbformat.read(written[0], 4)
    assert [c.id for c in student.cells] == [c.id for c in teacher.cells]
    text = "\n".join(c.source for c in student.cells)
    for secret in ("sum(values)", "min(x, hi)", "HIDDEN", "mean([5])", "SOLUTION"):
        assert secret not in text
    assert "x * x" not in _cell(student, "ex1").source
    assert text.count(grading.STUB) == 4 and all(not c.get("outputs") for c in student.cells)
    assert "# POINTS: 2" in _cell(student, "check2").source


def test_release_cli_and_its_old_form(tmp_path, capsys):
    assert cli.main(["release", "--out", str(tmp_path / "a"), "--notebooks-dir", str(INSTRUCTOR)]) == 0
    assert cli.main(["--out", str(tmp_path / "b"), "--notebooks-dir", str(INSTRUCTOR)]) == 0  # make student
    assert (tmp_path / "a" / "01_fixture.ipynb").read_text() == (tmp_path / "b" / "01_fixture.ipynb").read_text()


def test_student_version_and_extraction_round_trip():
    layout = grading.instructor_layout(FIXTURE)
    assert [(e.number, e.points, e.template.slots) for e in layout.exercises] == [("1", 1, 1), ("2", 2, 1), ("3", 1, 2)]
    untouched = read_submission(layout, _released())
    assert untouched.tampered == [] and all(s == [None] * len(s) for s in untouched.solutions.values())
    done = read_submission(layout, _fill(_released(), **CORRECT))
    assert done.tampered == [] and done.solutions[0] == ["    return x * x"] and done.solutions[2][1] == ""


def test_extract_reports_edits_outside_the_block():
    template, _ = split_solutions("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\nf(1)")
    ex = extract_solutions(template, "import os\ndef f(x):\n    y = x\n    return y\nf(1)")
    assert ex.solutions == ["    y = x\n    return y"] and len(ex.outside) == 1 and "import os" in ex.outside[0]


def test_suspicious_code_is_flagged():
    flagged = suspicious("torch.testing.assert_close = lambda *a, **k: None\nnp.allclose = f\n"
                         "sys.modules['x'] = m\nos.environ['COURSE_GRADING'] = '0'\nget_ipython().run_cell('1')\n"
                         "import builtins\nexercise.__exit__ = g", {"exercise"})
    assert len(flagged) == 7 and "torch.testing.assert_close" in flagged[0]
    assert suspicious("self.alpha = 1\nout = x * 2\nreturn out", {"exercise"}) == []


def test_locals_of_a_function_are_not_shared_names():
    template, _ = split_solutions("def f(x):\n    ### BEGIN SOLUTION\n    fpr = 1\n    ### END SOLUTION\n"
                                  "    return fpr\nfor i in range(2):\n"
                                  "    ### BEGIN SOLUTION\n    fpr = 2\n    ### END SOLUTION\n")
    assert template.in_function() == (True, False)
    assert suspicious("fpr = 1\nreturn fpr", {"fpr"}, in_function=True) == []
    assert suspicious("global fpr\nfpr = 1", {"fpr"}, in_function=True) == ["line 2: rebinds the shared name 'fpr'"]
    assert suspicious("fpr = 2", {"fpr"}) == ["line 1: rebinds the shared name 'fpr'"]
    assert suspicious("for n, p in model.named_parameters():\n    p.data = p.data * 0", {"p"}, in_function=True) == []
    assert suspicious("p.data = 0", {"p"}, in_function=True) == ["line 1: assigns to p.data"]
    assert suspicious("torch = 1\ntorch.allclose = f", set(), in_function=True) == ["line 2: assigns to torch.allclose"]


def test_tokens_end_the_with_body_and_the_cell():
    source, inner, outer = with_tokens('with exercise(1, "t"):\n    a = 1\n    b = 2\nc = 3')
    assert source.split("\n") == ['with exercise(1, "t"):', "    a = 1", "    b = 2", f"    print({inner!r})",
                                  "c = 3", f"print({outer!r})"]


# ---------------------------------------------------------------- hostile submissions, one grade call


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every hostile submission in one call (2 jobs); yields (rows by student, out dir, paths, server)."""
    base = tmp_path_factory.mktemp("grading")
    subs, out = base / "submissions", base / "out"
    hits: list[int] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            hits.append(1)
            conn.sendall(b"x * x")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    marker = uuid.uuid4().hex
    targets = [REPO_ROOT / f"pwned-{marker}", INSTRUCTOR / f"pwned-{marker}", subs / "correct" / f"pwned-{marker}",
               out / f"pwned-{marker}", Path("/tmp") / f"pwned-{marker}", Path.home() / f"pwned-{marker}"]
    released = _released()
    wrong = {**CORRECT, "ex1": "    return x + x"}
    students: dict[str, nbformat.NotebookNode] = {
        "correct": _fill(released, **CORRECT),
        "edited_check": _fill(released, **wrong),
        "deleted_marker": _fill(released, **CORRECT),
        "added_cell": _fill(released, **wrong),
        "infinite_loop": _fill(released, **{**CORRECT, "ex1": "    import signal\n    signal.signal(signal.SIGINT, "
                                            "signal.SIG_IGN)\n    while True:\n        pass"}),
        "exits": _fill(released, **{**CORRECT, "ex2": "    import os\n    os._exit(1)"}),
        "reads_instructor": _fill(released, **{**CORRECT, "ex2": (
            "    import glob\n    from course_utils.paths import REPO_ROOT\n"
            f"    paths = [{str(FIXTURE)!r}, {str(subs / 'correct' / '01_fixture.ipynb')!r}]\n"
            "    paths += glob.glob(str(REPO_ROOT / 'notebooks' / '*.ipynb'))\n"
            "    paths += glob.glob(str(REPO_ROOT / 'tests' / '**' / '*.ipynb'), recursive=True)\n"
            "    for path in paths:\n        try:\n            text = open(path).read()\n"
            "        except OSError:\n            continue\n"
            "        if 'sum(values) / len(values)' in text:\n            return sum(values) / len(values)\n"
            "    return 0")}),
        "network": _fill(released, **{**CORRECT, "ex1": (
            f"    import socket\n    with socket.create_connection(('127.0.0.1', {port}), timeout=3) as s:\n"
            "        formula = s.recv(64).decode()\n    return eval(formula)")}),
        "memory": _fill(released, **{**CORRECT, "ex1": "    blob = bytearray(10 * 1024 ** 3)\n    return x * x"}),
        "writes_outside": _fill(released, **{**CORRECT, "ex1": (
            f"    for path in {[str(t) for t in targets]!r}:\n        try:\n"
            "            open(path, 'w').write('pwned')\n        except OSError:\n            pass\n"
            "    return x * x")}),
        "warnings": _fill(released, **{**CORRECT, "ex1": (
            "    import sys, warnings\n    warnings.warn('a harmless warning', UserWarning)\n"
            "    print('noise on stderr', file=sys.stderr)\n    return x * x"), "ex2": (
            "    import torch\n    torch.tensor(torch.ones(1))  # PyTorch warns: copy-construct from a tensor\n"
            "    return sum(values) / len(values)")}),
        "hardcoded": _fill(released, **{**CORRECT, "ex2": "    return 2"}),
        "patcher": _fill(released, **{**wrong, "ex1": "    exercise.__exit__ = lambda self, *exc: True\n"
                                      "    return x + x"}),
        "new_ids": _fill(released, **CORRECT),
    }
    _cell(students["edited_check"], "check1").source = 'print("Exercise 1 passed: square matches the reference.")'
    check2 = _cell(students["deleted_marker"], "check2")
    check2.source = "\n".join(check2.source.split("\n")[2:])
    added = new_code_cell("def reference_square(x):\n    return x + x")
    students["added_cell"].cells.insert(5, added)
    for cell in students["new_ids"].cells:
        cell.id = uuid.uuid4().hex[:8]
    for name, nb in students.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(nb, subs / name / "01_fixture.ipynb")
    nbformat.write(_fill(_released("02_fixture.ipynb"), ex1="    return 2 * x"), subs / "correct" / "02_fixture.ipynb")
    (subs / "nothing").mkdir()
    code = cli.main(["grade", str(subs), "--out", str(out), "--jobs", "2", "--timeout-cell", str(TIMEOUT_CELL),
                     "--notebooks-dir", str(INSTRUCTOR)])
    server.close()
    assert code == 0
    rows: dict[str, list[dict[str, str]]] = {}
    for row in grading.read_gradebook(out / "gradebook.csv"):
        rows.setdefault(row["student"], []).append(row)
    yield rows, out, targets, hits
    for target in targets:  # only ever there without a sandbox (test_sandbox_... says so)
        target.unlink(missing_ok=True)


def _scores(rows: list[dict[str, str]], notebook: str = "01_fixture.ipynb") -> dict[str, tuple[str, str]]:
    return {r["exercise"]: (r["points"], r["status"]) for r in rows if r["notebook"] == notebook
            and r["status"] != "tampered"}


def _tampered(rows: list[dict[str, str]]) -> list[str]:
    return [r["message"] for r in rows if r["status"] == "tampered"]


FULL = {"1": ("1", "passed"), "2": ("2", "passed"), "3": ("1", "passed")}


def test_gradebook_columns_and_full_marks(graded):
    rows, out, _, _ = graded
    header = (out / "gradebook.csv").read_text().split("\n")[0]
    assert header == "student,notebook,exercise,points,max_points,status,message"
    assert _scores(rows["correct"]) == FULL and _scores(rows["correct"], "02_fixture.ipynb") == {"1": ("1", "passed")}
    assert _tampered(rows["correct"]) == []
    assert _scores(rows["new_ids"]) == FULL, "cells matched by exercise order when the ids are gone"
    assert {r["max_points"] for r in rows["correct"] if r["exercise"] == "2"} == {"2"}


def test_missing_notebooks_give_missing_rows(graded):
    rows = graded[0]
    assert _scores(rows["nothing"]) == {"1": ("0", "missing"), "2": ("0", "missing"), "3": ("0", "missing")}
    assert _scores(rows["edited_check"], "02_fixture.ipynb") == {"1": ("0", "missing")}


def test_instructor_cells_are_what_runs(graded):
    rows = graded[0]
    assert _scores(rows["edited_check"]) == {**FULL, "1": ("0", "failed")}
    assert any("check cell of exercise 1 was edited" in m for m in _tampered(rows["edited_check"]))
    assert _scores(rows["deleted_marker"]) == FULL
    assert any("check cell of exercise 2 was edited" in m for m in _tampered(rows["deleted_marker"]))
    assert _scores(rows["added_cell"]) == {**FULL, "1": ("0", "failed")}
    assert any("added by the student" in m for m in _tampered(rows["added_cell"]))


def test_hidden_tests_count_but_never_show(graded):
    rows, out, _, _ = graded
    (message,) = [r["message"] for r in rows["hardcoded"] if r["exercise"] == "2" and r["status"] == "failed"]
    assert _scores(rows["hardcoded"]) == {**FULL, "2": ("0", "failed")} and "single value" in message
    feedback = (out / "feedback" / "hardcoded.md").read_text()
    executed = (out / "executed" / "hardcoded" / "01_fixture.ipynb").read_text()
    assert "Total: **2 / 5** points" in feedback and "## 01_fixture.ipynb: 2 / 4" in feedback
    for text in (feedback, executed):
        assert "mean([5])" not in text and "grading-token" not in text


def test_runaway_code_costs_only_its_own_exercise(graded):
    rows = graded[0]
    assert _scores(rows["infinite_loop"]) == {**FULL, "1": ("0", "timeout")}
    assert _scores(rows["exits"]) == {**FULL, "2": ("0", "error")}
    assert "kernel died" in next(r["message"] for r in rows["exits"] if r["exercise"] == "2")
    assert _scores(rows["memory"]) == {**FULL, "1": ("0", "failed")}
    assert "MemoryError" in next(r["message"] for r in rows["memory"] if r["exercise"] == "1")
    assert _scores(rows["warnings"]) == FULL, "warnings on stderr never cost points"


def test_sandbox_hides_files_network_and_writes(graded):
    rows, _, targets, hits = graded
    box = grading.probe()
    if not box.mounts:
        pytest.skip(f"no mount namespace here ({'; '.join(box.warnings)})")
    assert _scores(rows["reads_instructor"]) == {**FULL, "2": ("0", "failed")}
    assert _scores(rows["network"]) == {**FULL, "1": ("0", "failed")} and hits == []
    assert "runs generated code with eval()" in next(r["message"] for r in rows["network"] if r["exercise"] == "1")
    assert _scores(rows["writes_outside"]) == FULL
    assert [t for t in targets if t.exists()] == []


def test_patched_check_machinery_fails_and_is_flagged(graded):
    rows = graded[0]
    (row,) = [r for r in rows["patcher"] if r["exercise"] == "1" and r["notebook"] == "01_fixture.ipynb"
              and r["max_points"] != "0"]
    assert (row["points"], row["status"]) == ("0", "tampered") and "FLAGGED FOR REVIEW" in row["message"]
    assert "exercise.__exit__" in row["message"]


# ---------------------------------------------------------------- validate, check, CLI


def test_validate_passes_on_the_fixture_and_names_a_broken_exercise(tmp_path, capsys):
    nb = nbformat.read(INSTRUCTOR / "02_fixture.ipynb", 4)
    _cell(nb, "ex1").source = _cell(nb, "ex1").source.replace("return 2 * x", "return 2 + x")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "01_fixture.ipynb").write_text(FIXTURE.read_text())
    nbformat.write(nb, folder / "02_broken.ipynb")
    assert cli.main(["validate", "--notebooks-dir", str(folder), "--timeout-cell", str(TIMEOUT_CELL)]) == 1
    err = [line for line in capsys.readouterr().err.split("\n") if line.startswith("validate:")]
    assert len(err) == 1 and "02_broken.ipynb: exercise 1 scores 0/1 with the instructor's solution" in err[0]


def test_check_runs_public_checks_only(tmp_path, capsys):
    path = tmp_path / "01_fixture.ipynb"
    nbformat.write(_fill(_released(), **{**CORRECT, "ex2": "    return 2", "ex3": "    return 0"}), path)
    results = grading.check(path, timeout_cell=TIMEOUT_CELL)
    assert [(r.exercise, r.status) for r in results] == [("1", "passed"), ("2", "passed"), ("3", "failed")]
    assert "clip(5, 0, 3) should be 3" in results[2].message


@pytest.mark.parametrize("argv, needle", [
    (["grade", "/no/such/folder", "--out", "x"], "submissions=/no/such/folder: no such folder"),
    (["grade", ".", "--out", "/tmp/x", "--jobs", "0", "--notebooks-dir", str(INSTRUCTOR)], "jobs=0 is not valid"),
    (["grade", ".", "--out", "/tmp/x", "--timeout-cell", "-1"], "timeout_cell=-1.0 is not valid"),
    (["validate", "--notebooks-dir", "/no/such"], "notebooks_dir=/no/such: no such folder"),
    (["check", "/no/such.ipynb"], "notebook=/no/such.ipynb: no such file"),
])
def test_bad_cli_input_names_the_parameter(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().split("\n")) == 1


def test_a_broken_instructor_notebook_is_named(tmp_path, capsys):
    nb = nbformat.read(FIXTURE, 4)
    nb.cells = [c for c in nb.cells if c.id != "check2"]
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "01_fixture.ipynb")
    assert cli.main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"),
                     "--notebooks-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "01_fixture.ipynb, cell ex2: an exercise cell must be followed by a check cell" in err


def test_api_rejects_bad_values():
    with pytest.raises(ValueError, match="jobs=True"):
        api.grade(INSTRUCTOR, "/tmp/out", jobs=True, notebooks_dir=INSTRUCTOR)
    with pytest.raises(ValueError, match="out=.* is inside submissions"):
        api.grade(INSTRUCTOR.parent, INSTRUCTOR.parent / "out", notebooks_dir=INSTRUCTOR)
