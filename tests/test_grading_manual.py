"""Written answers: the rubric stays with the instructor, grading writes a sheet, merging puts the TA's points back."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell

from course_utils import grading
from course_utils.grading import cli, manual
from course_utils.grading.layout import PLACEHOLDER, RUBRIC_BEGIN, RUBRIC_END
from course_utils.grading.report import read_gradebook

FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "instructor" / "02_fixture.ipynb"
RUBRIC = "Model answer: doubling is linear.\n- 1 point: says linear\n- 1 point: gives 2x"


def _instructor(folder: Path) -> Path:
    """The one-exercise fixture plus a question worth 2 points and one worth 1."""
    nb = nbformat.read(FIXTURE, 4)
    nb.cells += [new_markdown_cell("**Question:** is doubling linear? Why?", id="q-linear"),
                 new_markdown_cell(f"**Your answer** (2 points):\n\n{RUBRIC_BEGIN}\n{RUBRIC}\n"
                                   f"{RUBRIC_END}", id="answer-linear"),
                 new_markdown_cell("**Question:** what is double(0)?", id="q-zero"),
                 new_markdown_cell(f"**Your answer** (1 point):\n{RUBRIC_BEGIN}\nzero\n{RUBRIC_END}",
                                   id="answer-zero")]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "01_written.ipynb"
    nbformat.write(nb, path)
    return path


def test_questions_are_read_and_the_rubric_is_never_released(tmp_path):
    layout = grading.instructor_layout(_instructor(tmp_path))
    assert [(q.number, q.points, q.cell_id) for q in layout.questions] == [("Q1", 2.0, "answer-linear"),
                                                                           ("Q2", 1.0, "answer-zero")]
    assert layout.questions[0].rubric == RUBRIC and "is doubling linear" in layout.questions[0].prompt
    released = grading.student_notebook(layout)
    text = "\n".join(c.source for c in released.cells)
    assert "Model answer" not in text and RUBRIC_BEGIN not in text and "zero\n" not in text
    assert released.cells[-3].source == f"**Your answer** (2 points):\n\n{PLACEHOLDER}"
    assert released.metadata["course_grading"]["questions"][1] == {"cell": "answer-zero", "number": "Q2",
                                                                   "points": 1.0}


@pytest.mark.parametrize("source, needle", [
    ("**Answer** (2 points):\n### BEGIN RUBRIC\nx\n### END RUBRIC", "first line must read"),
    ("**Your answer** (0 points):\n### BEGIN RUBRIC\nx\n### END RUBRIC", "points must be a number > 0"),
    ("**Your answer** (1 point):\n### BEGIN RUBRIC\n\n### END RUBRIC", "rubric is empty"),
    ("**Your answer** (1 point):\n### BEGIN RUBRIC\nx", "needs exactly one"),
])
def test_a_broken_answer_cell_is_named(tmp_path, source, needle):
    nb = nbformat.read(FIXTURE, 4)
    nb.cells += [new_markdown_cell("**Question:** why?", id="q"), new_markdown_cell(source, id="bad")]
    nbformat.write(nb, tmp_path / "01_bad.ipynb")
    with pytest.raises(ValueError, match=f"01_bad.ipynb, answer cell bad: .*{needle}"):
        grading.instructor_layout(tmp_path / "01_bad.ipynb")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("written")
    layout = grading.instructor_layout(_instructor(base / "notebooks"))
    for student, answer in (("ann", "Yes: double(a + b) = double(a) + double(b)."), ("bob", None)):
        nb = grading.student_notebook(layout)
        nb.cells[2].source = nb.cells[2].source.replace(grading.STUB, "return 2 * x")
        if answer:
            next(c for c in nb.cells if c.id == "answer-linear").source = f"**Your answer** (2 points):\n\n{answer}"
        (base / "subs" / student).mkdir(parents=True)
        nbformat.write(nb, base / "subs" / student / "01_written.ipynb")
    grading.grade(base / "subs", base / "out", jobs=2, notebooks_dir=base / "notebooks")
    return base / "out"


def _book(out: Path) -> dict[tuple[str, str], tuple[str, str]]:
    return {(r["student"], r["exercise"]): (r["points"], r["status"]) for r in read_gradebook(out / "gradebook.csv")}


def _sheet(out: Path) -> list[dict[str, str]]:
    with open(out / "manual" / "answers.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_grading_writes_pending_rows_a_sheet_and_a_rubric(graded):
    assert _book(graded) == {("ann", "1"): ("1", "passed"), ("ann", "Q1"): ("0", "pending"),
                             ("ann", "Q2"): ("0", "unanswered"), ("bob", "1"): ("1", "passed"),
                             ("bob", "Q1"): ("0", "unanswered"), ("bob", "Q2"): ("0", "unanswered")}
    (row,) = _sheet(graded)
    assert row["student"] == "ann" and row["question"] == "Q1" and row["max_points"] == "2" and \
        row["answer"].startswith("Yes: double(a + b)") and row["points"] == ""
    assert "Model answer: doubling is linear." in (graded / "manual" / "rubric.md").read_text()
    feedback = (graded / "feedback" / "ann.md").read_text()
    assert "Model answer" not in feedback and "1 written answer(s) await grading by hand" in feedback


def _fill(out: Path, points: str, comment: str = "", **extra: str) -> Path:
    rows = _sheet(out)
    rows[0].update(points=points, comment=comment)
    if extra:
        rows.append({**rows[0], **extra})
    path = out.parent / f"sheet-{len(list(out.parent.glob('sheet-*')))}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=manual.SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_bad_sheet_merges_nothing_and_names_every_problem(graded, capsys):
    before = (graded / "gradebook.csv").read_text()
    sheet = _fill(graded, "3", student="eve")
    assert cli.main(["merge", str(graded), "--sheet", str(sheet)]) == 2
    err = capsys.readouterr().err
    assert "points='3' must be a number from 0 to 2" in err and "line 3 (eve / 01_written.ipynb / Q1): no written " \
        "answer" in err and "nothing was merged" in err
    with pytest.raises(ValueError, match="a comment without points"):
        manual.merge(graded, _fill(graded, "", "nice"))
    with pytest.raises(ValueError, match="points='two' must be a number"):
        manual.merge(graded, _fill(graded, "two"))
    assert (graded / "gradebook.csv").read_text() == before


def test_merge_puts_points_and_comments_into_gradebook_and_feedback(graded, capsys):
    assert cli.main(["merge", str(graded), "--sheet", str(_fill(graded, "1.5", "right idea; show 2x"))]) == 0
    assert "merged 1 hand-graded answer(s) for 2 student(s); 0 still pending" in capsys.readouterr().out
    assert _book(graded)[("ann", "Q1")] == ("1.5", "graded by hand")
    feedback = (graded / "feedback" / "ann.md").read_text()
    assert "| Q1 | 1.5 / 2 | graded by hand | right idea; show 2x |" in feedback
    assert "Total: **2.5 / 4** points." in feedback and "await grading" not in feedback
    manual.merge(graded, _fill(graded, "2", "regraded"))  # a correction replaces the earlier grade
    assert _book(graded)[("ann", "Q1")] == ("2", "graded by hand")
