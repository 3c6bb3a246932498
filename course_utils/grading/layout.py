"""Which cells of a notebook are set-up, exercise and check cells, and the student version built from that.

The instructor's notebook is the single source of truth: its exercise cells hold ``### BEGIN SOLUTION`` blocks,
the next code cell is the check (``# NBVAL_CHECK_OUTPUT`` first, optional ``# POINTS: n``), and cells tagged
``setup`` are what the exercises need. The student version records the same layout in its metadata
(``course_grading``) so ``check`` can find a student's exercises without the instructor's copy.
"""

from __future__ import annotations

import ast
import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .surgery import BEGIN, CHECK_MARKER, Template, compiles, split_solutions, strip_hidden, without_hidden_markers

METADATA_KEY = "course_grading"
_POINTS = re.compile(r"^#\s*POINTS:\s*(\S+)\s*$")
#: An answer cell (markdown): its first line gives the points, the rubric sits between the markers (see .manual).
RUBRIC_BEGIN, RUBRIC_END = "### BEGIN RUBRIC", "### END RUBRIC"
PLACEHOLDER = "YOUR ANSWER HERE"
_DESIGN = re.compile(r"^\s*#\s*DESIGN:\s*(?P<name>[\w-]+)\s*\((?P<points>[0-9.]+)\s*points?\)\s*$")
_HEADER = re.compile(r"^\*\*Your answer\*\*\s*\((?P<points>[0-9.]+)\s*points?\)\s*:?\s*$")


@dataclass(frozen=True)
class Exercise:
    """One exercise: its cell (as a template), its check cell and what it is worth."""

    ordinal: int  # position among the notebook's exercises, from 0
    number: str  # the N of ``with exercise(N, ...)`` (ordinal + 1 when the check does not say)
    title: str
    points: float
    cell_id: str
    check_id: str
    template: Template
    solutions: tuple[str, ...]  # the instructor's
    check_source: str  # hidden tests included, markers removed
    public_check: str  # hidden tests removed: what students see
    design: str | None = None  # a design task (``# DESIGN: name (N points)``): the grader measures the config
    design_points: float = 0.0

    @property
    def design_label(self) -> str:
        """The gradebook's name for the design row of this exercise."""
        return f"{self.number} design"


@dataclass
class Layout:
    """A notebook seen by the grader: its set-up cells (in order) and its exercises."""

    name: str
    notebook: NotebookNode
    setup_ids: list[str]
    exercises: list[Exercise]
    questions: list[Question] = field(default_factory=list)  # written answers, graded by hand

    @property
    def max_points(self) -> float:
        return sum(e.points for e in self.exercises)

    def cell(self, cell_id: str) -> NotebookNode:
        return next(c for c in self.notebook.cells if c.get("id") == cell_id)


@dataclass(frozen=True)
class Question:
    """One written question: its answer cell, what it is worth, the question text and the (secret) rubric."""

    number: str  # "Q1", "Q2", ... in notebook order
    points: float
    cell_id: str
    header: str  # the answer cell's first line, kept in the student version
    prompt: str
    rubric: str


def is_answer(cell: NotebookNode) -> bool:
    return cell.cell_type == "markdown" and RUBRIC_BEGIN in cell.source


def questions_of(nb: NotebookNode, name: str) -> list[Question]:
    """The written questions of an instructor's notebook; ValueError naming the cell for a broken answer cell."""
    found: list[Question] = []
    prompt = ""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        if not is_answer(cell):
            if "**Question" in cell.source:
                prompt = cell.source[cell.source.index("**Question"):].strip()
            continue
        what = f"{name}, answer cell {cell.id}"
        lines = cell.source.strip().split("\n")
        match = _HEADER.match(lines[0].strip())
        if not match:
            raise ValueError(f"{what}: the first line must read '**Your answer** (N points):', not {lines[0]!r}")
        points = float(match.group("points")) if match.group("points").replace(".", "", 1).isdigit() else -1.0
        if not (points > 0 and math.isfinite(points)):
            raise ValueError(f"{what}: the points must be a number > 0, not {match.group('points')!r}")
        body = "\n".join(lines[1:])
        if body.count(RUBRIC_BEGIN) != 1 or body.count(RUBRIC_END) != 1 or \
                body.index(RUBRIC_BEGIN) > body.index(RUBRIC_END):
            raise ValueError(f"{what}: needs exactly one {RUBRIC_BEGIN!r} ... {RUBRIC_END!r} block")
        rubric = body[body.index(RUBRIC_BEGIN) + len(RUBRIC_BEGIN):body.index(RUBRIC_END)].strip()
        if not rubric:
            raise ValueError(f"{what}: the rubric is empty")
        if not prompt:
            raise ValueError(f"{what}: no '**Question' cell comes before it")
        found.append(Question(f"Q{len(found) + 1}", points, cell.id, lines[0].strip(), prompt, rubric))
        prompt = ""
    return found


def released_source(question: Question) -> str:
    """The answer cell as students get it: the header, then the placeholder (no rubric)."""
    return f"{question.header}\n\n{PLACEHOLDER}"


def read_notebook(path: os.PathLike | str, what: str = "notebook") -> NotebookNode:
    """The notebook at ``path`` (format 4) with a cell id on every cell; ValueError naming ``what`` otherwise."""
    try:
        nb = nbformat.read(os.fspath(path), as_version=4)
    except Exception as e:  # noqa: BLE001 - JSON, schema (jsonschema's ValidationError), I/O: all say "unreadable"
        raise ValueError(f"{what} {path} cannot be read as a notebook ({type(e).__name__}: {e})") from e
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        nb.nbformat_minor = 5
    for i, cell in enumerate(nb.cells):
        if not cell.get("id"):
            cell["id"] = f"cell-{i}"
    return nb


def points_of(check_source: str, what: str) -> float:
    """The ``# POINTS: n`` of a check cell (1 without the line); ValueError for anything but a number >= 0."""
    for line in check_source.split("\n")[1:4]:
        match = _POINTS.match(line.strip())
        if match:
            try:
                value = float(match.group(1))
            except ValueError:
                value = -1.0
            if value < 0 or value != value:
                raise ValueError(f"{what}: '# POINTS: {match.group(1)}' must be a number >= 0")
            return value
    return 1.0


def design_of(template: Template, what: str) -> tuple[str | None, float]:
    """``(task name, points)`` of an exercise cell whose fixed lines hold ``# DESIGN: name (N points)``, else
    ``(None, 0.0)``; ValueError for an unknown task or points that are not > 0."""
    found = [m for part in template.fixed for line in part if (m := _DESIGN.match(line))]
    if not found:
        return None, 0.0
    from ..designs import DESIGNS  # the course's registry: the grader measures, never the student's kernel

    name, raw = found[0].group("name"), found[0].group("points")
    if name not in DESIGNS:
        raise ValueError(f"{what}: design task {name!r} is not registered (known: {sorted(DESIGNS)})")
    points = float(raw) if raw.replace(".", "", 1).isdigit() else -1.0
    if not points > 0:
        raise ValueError(f"{what}: a design task's points must be a number > 0, not {raw!r}")
    return name, points


def exercise_label(check_source: str) -> tuple[str | None, str]:
    """``(N, title)`` from the first ``exercise(N, "title")`` call of a check cell (``(None, "")`` if none)."""
    try:
        tree = ast.parse(check_source)
    except SyntaxError:
        return None, ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "exercise":
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args[:2]]
            number = None if not args or args[0] is None else str(args[0])
            title = str(args[1]) if len(args) > 1 and args[1] is not None else ""
            return number, title
    return None, ""


def _code_cells(nb: NotebookNode) -> list[NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def is_setup(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and "setup" in cell.metadata.get("tags", [])


def instructor_layout(path: os.PathLike | str) -> Layout:
    """The layout of an instructor's notebook; ValueError naming the cell for any broken convention."""
    name = Path(path).name
    nb = read_notebook(path, "instructor notebook")
    code = _code_cells(nb)
    exercises: list[Exercise] = []
    for position, cell in enumerate(code):
        if BEGIN not in cell.source:
            continue
        what = f"{name}, cell {cell.id}"
        template, solutions = split_solutions(cell.source, what)
        check = code[position + 1] if position + 1 < len(code) else None
        if check is None or not check.source.startswith(CHECK_MARKER):
            raise ValueError(f"{what}: an exercise cell must be followed by a check cell starting with "
                             f"{CHECK_MARKER!r}")
        if BEGIN in check.source:
            raise ValueError(f"{name}, cell {check.id}: a check cell cannot hold a solution block")
        full, public = without_hidden_markers(check.source, f"{name}, cell {check.id}"), strip_hidden(check.source)
        for label, source in (("exercise", template.released()), ("check", public), ("check", full)):
            error = compiles(source)
            if error:
                raise ValueError(f"{what}: the {label} cell is not valid Python once rebuilt ({error})")
        number, title = exercise_label(full)
        design, design_points = design_of(template, what)
        exercises.append(Exercise(len(exercises), number or str(len(exercises) + 1), title,
                                  points_of(check.source, f"{name}, cell {check.id}"), cell.id, check.id,
                                  template, tuple(solutions), full, public, design, design_points))
    numbers = [e.number for e in exercises]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{name}: two check cells use the same exercise number ({numbers})")
    return Layout(name, nb, [c.id for c in code if is_setup(c)], exercises, questions_of(nb, name))


def student_notebook(layout: Layout) -> NotebookNode:
    """The student version: stubs for solutions, no hidden tests, no outputs, every cell id kept."""
    nb = copy.deepcopy(layout.notebook)
    by_id = {e.cell_id: e for e in layout.exercises}
    checks = {e.check_id: e for e in layout.exercises}
    answers = {q.cell_id: q for q in layout.questions}
    for cell in nb.cells:
        if cell.id in answers:
            cell.source = released_source(answers[cell.id])
        if cell.cell_type != "code":
            continue
        if cell.id in by_id:
            cell.source = by_id[cell.id].template.released()
        elif cell.id in checks:
            cell.source = checks[cell.id].public_check
        cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nb.metadata[METADATA_KEY] = {
        "setup": list(layout.setup_ids),
        "exercises": [{"cell": e.cell_id, "check": e.check_id, "number": e.number, "points": e.points}
                      for e in layout.exercises],
        "questions": [{"cell": q.cell_id, "number": q.number, "points": q.points} for q in layout.questions]}
    return nb


def student_version(src: os.PathLike | str, dst: os.PathLike | str) -> int:
    """Write the student version of notebook ``src`` to ``dst``; returns the number of exercises in it."""
    layout = instructor_layout(src)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_notebook(layout), os.fspath(dst))
    return len(layout.exercises)


def self_check_layout(nb: NotebookNode, name: str) -> Layout:
    """A layout read from a student's own notebook (for ``check``): the exercise cells are taken as the student
    wrote them (one slot holding everything) and the checks are the public ones the notebook contains."""
    code = _code_cells(nb)
    by_id = {c.id: c for c in code}
    recorded = nb.metadata.get(METADATA_KEY, {}).get("exercises", [])
    pairs = [(by_id.get(r.get("cell")), by_id.get(r.get("check")), r) for r in recorded]
    if not recorded or any(a is None or b is None for a, b, _ in pairs):
        pairs = [(code[i - 1], c, {}) for i, c in enumerate(code)
                 if i > 0 and c.source.startswith(CHECK_MARKER) and "exercise(" in c.source]
    exercises = []
    for ordinal, (cell, check, meta) in enumerate(pairs):
        assert cell is not None and check is not None
        number, title = exercise_label(check.source)
        points = float(meta.get("points", points_of(check.source, f"{name}, cell {check.id}")))
        exercises.append(Exercise(ordinal, number or str(ordinal + 1), title, points, cell.id, check.id,
                                  Template((tuple(cell.source.split("\n")),), ()), (), check.source, check.source))
    return Layout(name, nb, [c.id for c in code if is_setup(c)], exercises)
