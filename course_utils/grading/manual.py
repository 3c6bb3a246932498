"""Written answers: graded by a person with the instructor's rubric, then merged into the gradebook and feedback.

An answer cell is a markdown cell of the instructor's notebook that starts with its points and holds the rubric::

    **Your answer** (2 points):

    ### BEGIN RUBRIC
    Model answer ... - 1 point: ... - 1 point: ...
    ### END RUBRIC

The student version keeps the first line and puts ``YOUR ANSWER HERE`` where the rubric was: the rubric never
leaves the instructor's notebook. ``grade`` gives every answer a ``pending`` row (0 points until a person grades it,
``unanswered`` rows need nobody) and writes two files for the teaching assistants: ``manual/answers.csv``, one row
per answer with empty ``points`` and ``comment`` columns to fill in, and ``manual/rubric.md``, every question with
its rubric. ``merge`` checks the filled sheet (every error at once, before anything is written) and puts the points
and comments into ``gradebook.csv`` and the students' feedback; rows left blank stay pending, and merging again
with corrections replaces earlier hand grades.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock
from nbformat import NotebookNode

from ..storage import atomic_write_text
from .layout import PLACEHOLDER, Question
from .report import GRADED, PENDING, UNANSWERED, Row, feedback_text, gradebook_text, number, read_gradebook

SHEET_COLUMNS = ("student", "notebook", "question", "max_points", "answer", "points", "comment")


def answer_text(question: Question, nb: NotebookNode | None) -> str:
    """What the student wrote in the answer cell ('' if the cell is missing or still the placeholder)."""
    cell = None if nb is None else next((c for c in nb.cells if c.get("id") == question.cell_id), None)
    if cell is None:
        return ""
    text = cell.source.strip()
    if text.startswith(question.header):
        text = text[len(question.header):]
    text = text.replace(PLACEHOLDER, "").strip()
    return text


def answer_rows(student: str, notebook: str, questions: list[Question], nb: NotebookNode | None
                ) -> tuple[list[Row], list[dict[str, str]]]:
    """Gradebook rows (``pending`` or ``unanswered``, 0 points) and sheet rows for one student's notebook."""
    rows, sheet = [], []
    for q in questions:
        text = answer_text(q, nb)
        if not text:
            rows.append(Row(student, notebook, q.number, 0.0, q.points, UNANSWERED, "no answer was written"))
            continue
        rows.append(Row(student, notebook, q.number, 0.0, q.points, PENDING, "awaiting grading by hand"))
        sheet.append({"student": student, "notebook": notebook, "question": q.number,
                      "max_points": number(q.points), "answer": text, "points": "", "comment": ""})
    return rows, sheet


def write_sheet(out: Path, sheet: list[dict[str, str]], questions: dict[str, list[Question]]) -> None:
    """``out/manual/answers.csv`` (to fill in) and ``out/manual/rubric.md`` (for the teaching assistants only)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SHEET_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sheet)
    atomic_write_text(buffer.getvalue(), out / "manual" / "answers.csv")
    md = ["# Rubric for grading the written answers (teaching assistants only: never hand this out)", "",
          "Fill in `points` (0 to max_points) and a `comment` per row of answers.csv, then run",
          "`python -m course_utils.grading merge <this grades folder>`.", ""]
    for notebook, qs in questions.items():
        md += [f"## {notebook}", ""]
        for q in qs:
            md += [f"### {q.number} ({number(q.points)} points)", "", q.prompt, "", "**Rubric**", "", q.rubric, ""]
    atomic_write_text("\n".join(md).rstrip() + "\n", out / "manual" / "rubric.md")


@dataclass(frozen=True)
class MergeReport:
    graded: int
    pending: int
    students: int


def _row(d: dict[str, str]) -> Row:
    return Row(d["student"], d["notebook"], d["exercise"], float(d["points"]), float(d["max_points"]), d["status"],
               d["message"])


def merge(grades: os.PathLike | str, sheet: os.PathLike | str | None = None) -> MergeReport:
    """Put the points and comments of a filled ``answers.csv`` into ``grades``' gradebook and feedback.

    ValueError listing every problem (unknown rows, points that are not numbers between 0 and the question's
    points, a comment without points, a row given twice) before anything is written."""
    folder = Path(grades)
    book = folder / "gradebook.csv"
    if not book.is_file():
        raise ValueError(f"grades={grades}: no gradebook.csv in it (the folder `grade --out` wrote)")
    path = Path(sheet) if sheet is not None else folder / "manual" / "answers.csv"
    if not path.is_file():
        raise ValueError(f"sheet={path}: no such file")
    with FileLock(folder / ".merge.lock"):  # two teaching assistants merging at once lose nothing
        return _merge(folder, book, path)


def _merge(folder: Path, book: Path, path: Path) -> MergeReport:
    rows = [_row(d) for d in read_gradebook(book)]
    index = {(r.student, r.notebook, r.exercise): i for i, r in enumerate(rows) if r.status in (PENDING, GRADED)}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(SHEET_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"sheet={path}: columns {sorted(missing)} are missing (expected {list(SHEET_COLUMNS)})")
        entries = list(reader)
    problems, updates, seen = [], {}, set()
    for line, d in enumerate(entries, 2):
        key = (d["student"], d["notebook"], d["question"])
        where = f"line {line} ({' / '.join(key)})"
        raw, comment = (d.get("points") or "").strip(), (d.get("comment") or "").strip()
        if key not in index:
            problems.append(f"{where}: no written answer of that student, notebook and question in the gradebook")
            continue
        if key in seen:
            problems.append(f"{where}: given twice")
            continue
        seen.add(key)
        if not raw:
            if comment:
                problems.append(f"{where}: a comment without points; give the points too")
            continue
        best = rows[index[key]].max_points
        try:
            points = float(raw)
        except ValueError:
            points = math.nan
        if not (math.isfinite(points) and 0 <= points <= best):
            problems.append(f"{where}: points={raw!r} must be a number from 0 to {number(best)}")
            continue
        updates[index[key]] = (points, comment)
    if problems:
        raise ValueError(f"sheet={path}: nothing was merged; fix these rows:\n  " + "\n  ".join(problems))
    for i, (points, comment) in updates.items():
        rows[i] = replace(rows[i], points=points, status=GRADED, message=comment or "graded by hand")
    atomic_write_text(gradebook_text(rows), book)
    for student in dict.fromkeys(r.student for r in rows):
        atomic_write_text(feedback_text(student, [r for r in rows if r.student == student]),
                          folder / "feedback" / f"{student}.md")
    return MergeReport(len(updates), sum(r.status == PENDING for r in rows), len({r.student for r in rows}))
