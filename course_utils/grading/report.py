"""What grading leaves behind: the gradebook (CSV), one feedback file per student, the executed notebooks.

Everything here is safe to hand to students: messages come from the checks' failure messages (never from the
hidden tests' source), and the executed notebooks show public checks only, without tokens or check tracebacks.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from .core import PASSED, TAMPERED

#: Statuses of written answers (:mod:`.manual`): not yet graded by a person, left empty, graded by a person.
PENDING, UNANSWERED, GRADED = "pending", "unanswered", "graded by hand"
#: A design task's row that earned some of its points but missed a target (:mod:`course_utils.designs`).
PARTIAL = "partial"
COLUMNS = ("student", "notebook", "exercise", "points", "max_points", "status", "message")


@dataclass(frozen=True)
class Row:
    """One gradebook line."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str


def number(value: float) -> str:
    """``2`` rather than ``2.0``; ``0.5`` stays."""
    return f"{value:g}"


def gradebook_text(rows: Iterable[Row]) -> str:
    """The gradebook as CSV text, columns in :data:`COLUMNS` order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.student, r.notebook, r.exercise, number(r.points), number(r.max_points), r.status,
                         " ".join(r.message.split())])
    return buffer.getvalue()


def read_gradebook(path: os.PathLike | str) -> list[dict[str, str]]:
    """The rows of a gradebook written by :func:`write_outputs` (for tests and spreadsheets)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or "-"


def feedback_text(student: str, rows: list[Row]) -> str:
    """A student's Markdown feedback: per notebook, each exercise's points and what went wrong."""
    graded = [r for r in rows if r.status != TAMPERED or r.max_points > 0]  # a tampered exercise counts, at 0
    total, best = sum(r.points for r in graded), sum(r.max_points for r in graded)
    lines = [f"# Feedback for {student}", "", f"Total: **{number(total)} / {number(best)}** points.", ""]
    for notebook in dict.fromkeys(r.notebook for r in rows):
        mine = [r for r in rows if r.notebook == notebook]
        scored = [r for r in mine if r.status != TAMPERED or r.max_points > 0]
        lines += [f"## {notebook}: {number(sum(r.points for r in scored))} / "
                  f"{number(sum(r.max_points for r in scored))}", "",
                  "| Exercise | Points | Status | Message |", "|---|---|---|---|"]
        lines += [f"| {r.exercise} | {number(r.points)} / {number(r.max_points)} | {r.status} | {_md(r.message)} |"
                  for r in scored]
        notes = [r for r in mine if r.status == TAMPERED and r.max_points == 0]
        if notes:
            lines += ["", "Changes outside the solution blocks (not graded; the instructor's cells were run):", ""]
            lines += [f"- {('exercise ' + r.exercise + ': ') if r.exercise else ''}{_md(r.message)}" for r in notes]
        waiting = sum(r.status == PENDING for r in scored)
        if waiting:
            lines += ["", f"{waiting} written answer(s) await grading by hand; their points are added when a "
                          "teaching assistant has graded them."]
        if scored and all(r.status in (PASSED, GRADED) for r in scored):
            lines += ["", "All exercises passed."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _write(path: Path, text: str) -> None:
    """Write atomically (a reader never sees half a gradebook), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(out: Path, rows: list[Row], executed: dict[tuple[str, str], NotebookNode],
                  meta: dict[str, Any]) -> None:
    """``out/gradebook.csv``, ``out/feedback/<student>.md``, ``out/executed/<student>/<notebook>``, and
    ``out/grading.json`` (how the run was protected, timings, options)."""
    _write(out / "gradebook.csv", gradebook_text(rows))
    for student in dict.fromkeys(r.student for r in rows):
        _write(out / "feedback" / f"{student}.md", feedback_text(student, [r for r in rows if r.student == student]))
    for (student, notebook), nb in executed.items():
        _write(out / "executed" / student / notebook, nbformat.writes(nb) + "\n")
    _write(out / "grading.json", json.dumps(meta, indent=1, default=str) + "\n")


def rows_as_dicts(rows: Iterable[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
