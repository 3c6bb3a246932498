"""Every exercise's check catches the mistakes students really make, graded by the real grader.

For each exercise of the series, the plausible wrong solutions in ``tests/mistakes/nbNN.py`` (at least two, three for
every exercise written since the assignment rework) must fail with a message that names the mistake, and the correct
alternatives there, which differ from the reference, must pass. One notebook is graded per test
(``pytest tests/test_exercises.py -k 02``). The reference and the stub are covered by
``python -m course_utils.grading validate`` (full marks and zero), which CI runs too.
"""

from __future__ import annotations

import importlib
import textwrap

import nbformat
import pytest

from course_utils import grading
from course_utils.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _mistakes(name: str):
    """The module of wrong solutions and alternatives for notebook ``name``."""
    return importlib.import_module(f"mistakes.nb{name[:2]}")


def _submission(layout, blocks: dict[str, list[str]]) -> nbformat.NotebookNode:
    """The released notebook with each exercise's stub lines replaced by the given blocks, in order."""
    nb = grading.student_notebook(layout)
    for cell in nb.cells:
        if cell.id not in blocks:
            continue
        lines, todo, out = cell.source.split("\n"), list(blocks[cell.id]), []
        for line in lines:
            if grading.STUB in line and todo:
                indent = line[: len(line) - len(line.lstrip())]
                out += textwrap.indent(todo.pop(0), indent).split("\n")
            else:
                out.append(line)
        assert not todo, f"{cell.id}: more solution blocks given than the cell has"
        cell.source = "\n".join(out)
    return nb


def _grade(name: str, tmp_path) -> dict:
    """Grade the wrong solutions and the alternatives of one notebook; rows keyed by (student, exercise number)."""
    layout = grading.instructor_layout(NOTEBOOKS / name)
    mod, subs = _mistakes(name), tmp_path / "submissions"
    n_wrong = max((len(sols) for sols in mod.WRONG.values()), default=0)
    for k in range(n_wrong):
        path = subs / f"wrong{k + 1}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(_submission(layout, {cid: sols[k] for cid, sols in mod.WRONG.items() if k < len(sols)}), path)
    if mod.ALTERNATIVES:
        path = subs / "alternative" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(_submission(layout, mod.ALTERNATIVES), path)
    report = grading.grade(subs, tmp_path / "out", jobs=2, timeout_cell=120, design_smoke=True)
    return {(r.student, r.exercise): r for r in report.rows if r.notebook == name}


def _exercise_numbers(name: str) -> dict[str, str]:
    layout = grading.instructor_layout(NOTEBOOKS / name)
    return {e.cell_id: e.number for e in layout.exercises}


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_has_wrong_solutions(name):
    wrong = _mistakes(name).WRONG
    for cid in _exercise_numbers(name):
        assert len(wrong.get(cid, [])) >= 2, f"{name}: {cid} needs at least two wrong solutions"
    assert set(wrong) <= set(_exercise_numbers(name)), f"{name}: wrong solutions for cells that are no exercise"


@pytest.mark.parametrize("name", NAMES)
def test_plausible_mistakes_fail_and_alternatives_pass(name, tmp_path):
    rows, numbers, mod = _grade(name, tmp_path), _exercise_numbers(name), _mistakes(name)
    for cid, sols in mod.WRONG.items():
        for k in range(len(sols)):
            row = rows[f"wrong{k + 1}", numbers[cid]]
            assert row.status == "failed" and row.points == 0, \
                f"{name} exercise {numbers[cid]} (wrong solution {k + 1}): {row.status} — the check let it pass"
            assert row.message and "NotImplementedError" not in row.message, \
                f"{name} exercise {numbers[cid]} (wrong solution {k + 1}): the failure must name the mistake, " \
                f"got {row.message!r}"
    for cid in mod.ALTERNATIVES:
        row = rows["alternative", numbers[cid]]
        assert row.status == "passed", f"{name} exercise {numbers[cid]}: a correct alternative was rejected: " \
                                       f"{row.message}"
        assert "FLAGGED" not in (row.message or ""), f"{name} exercise {numbers[cid]}: a correct alternative was " \
                                                     f"flagged for review: {row.message}"
