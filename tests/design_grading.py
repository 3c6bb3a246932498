"""Grading a one-exercise design notebook for several students: what the design tasks' grader tests share."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from course_utils import grading
from course_utils.grading.report import read_gradebook


def grade_design_answers(tmp_path: Path, task: str, variable: str, reference: object,
                         answers: dict[str, str]) -> dict[tuple[str, str], dict[str, str]]:
    """Grade ``answers`` (student -> the right-hand side they wrote for ``variable``) against an instructor's
    notebook whose design cell assigns ``reference`` for ``task`` (4 points) and whose check only asks for a dict;
    the gradebook's rows keyed by (student, exercise)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [new_code_cell("from course_utils.checks import exercise, expect", id="setup",
                              metadata={"tags": ["setup"]}),
                new_code_cell(f"# DESIGN: {task} (4 points)\n### BEGIN SOLUTION\n{variable} = {reference!r}\n"
                              "### END SOLUTION", id="design"),
                new_code_cell(f'# NBVAL_CHECK_OUTPUT\nwith exercise(1, "a configuration"):\n'
                              f'    expect(isinstance({variable}, dict), "give a dict")', id="check")]
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "01_design.ipynb")
    layout = grading.instructor_layout(tmp_path / "nbs" / "01_design.ipynb")
    assert (layout.exercises[0].design, layout.exercises[0].design_points) == (task, 4.0)
    for student, config in answers.items():
        released = grading.student_notebook(layout)
        released.cells[1].source = released.cells[1].source.replace(grading.STUB, f"{variable} = {config}")
        (tmp_path / "subs" / student).mkdir(parents=True)
        nbformat.write(released, tmp_path / "subs" / student / "01_design.ipynb")
    grading.grade(tmp_path / "subs", tmp_path / "out", notebooks_dir=tmp_path / "nbs", design_smoke=True)
    return {(r["student"], r["exercise"]): r for r in read_gradebook(tmp_path / "out" / "gradebook.csv")}
