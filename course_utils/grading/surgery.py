"""Notebook surgery on cell sources: solution blocks, hidden tests, stubs.

An exercise cell is cut into a *template*: the instructor's fixed lines around each solution block, and one slot
per block. The student version fills every slot with the stub line; the graded version fills it with what the
student wrote there. Working on the template (never on regexes over the student's text) means a student cannot
move the fixed code around by typing marker comments into a solution.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass

from ..checks import STUB_MESSAGE

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
STUB = f'raise NotImplementedError("{STUB_MESSAGE}")'


def _marker(line: str, marker: str) -> bool:
    return line.strip().startswith(marker)


def _blocks(source: str, begin: str, end: str, what: str) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """``(fixed, inner, indents)``: the lines outside the blocks (one more list than blocks), the lines strictly
    inside each block, and each block's indentation. ValueError for unbalanced or nested markers."""
    fixed: list[list[str]] = [[]]
    inner: list[list[str]] = []
    indents: list[str] = []
    inside = False
    for number, line in enumerate(source.split("\n"), 1):
        if _marker(line, begin):
            if inside:
                raise ValueError(f"{what}: line {number} opens {begin!r} inside another block")
            inside = True
            indents.append(line[: len(line) - len(line.lstrip())])
            inner.append([])
        elif _marker(line, end):
            if not inside:
                raise ValueError(f"{what}: line {number} has {end!r} without {begin!r}")
            inside = False
            fixed.append([])
        elif inside:
            inner[-1].append(line)
        else:
            fixed[-1].append(line)
    if inside:
        raise ValueError(f"{what}: {begin!r} is never closed by {end!r}")
    return fixed, inner, indents


@dataclass(frozen=True)
class Template:
    """An exercise cell: fixed lines around ``len(indents)`` solution slots."""

    fixed: tuple[tuple[str, ...], ...]
    indents: tuple[str, ...]

    @property
    def slots(self) -> int:
        return len(self.indents)

    def stub(self, slot: int) -> str:
        """The student version's line for ``slot``."""
        return self.indents[slot] + STUB

    def render(self, solutions: list[str | None]) -> str:
        """The cell with slot ``i`` filled by ``solutions[i]`` (``None``: the stub; ``""``: nothing)."""
        if len(solutions) != self.slots:
            raise ValueError(f"solutions has {len(solutions)} entries; this cell has {self.slots} solution slots")
        lines = list(self.fixed[0])
        for i, solution in enumerate(solutions):
            lines.extend([self.stub(i)] if solution is None else solution.split("\n") if solution else [])
            lines.extend(self.fixed[i + 1])
        return "\n".join(lines)

    def released(self) -> str:
        return self.render([None] * self.slots)

    def in_function(self) -> tuple[bool, ...]:
        """For each slot, whether it lies inside a function body (its assignments bind locals, not the
        notebook's names): each slot is rendered as a marker statement and found in the parsed cell."""
        markers = [f"{indent}__course_slot_{i}__ = None" for i, indent in enumerate(self.indents)]
        try:
            tree = ast.parse(self.render(markers))
        except SyntaxError:
            tree = None
        inside: set[str] = set()
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inside |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id.startswith("__course_slot")}
        return tuple(f"__course_slot_{i}__" in inside for i in range(self.slots))


def split_solutions(source: str, what: str = "cell") -> tuple[Template, list[str]]:
    """The template of an instructor's exercise cell and its solutions (the lines between the markers)."""
    fixed, inner, indents = _blocks(source, BEGIN, END, what)
    return Template(tuple(map(tuple, fixed)), tuple(indents)), ["\n".join(lines) for lines in inner]


def strip_solutions(source: str) -> str:
    """Replace every solution block with ``raise NotImplementedError(STUB_MESSAGE)`` at the block's indentation."""
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced solution markers: {source.count(BEGIN)} {BEGIN!r} vs "
                         f"{source.count(END)} {END!r}")
    return split_solutions(source)[0].released()


def strip_hidden(source: str, what: str = "cell") -> str:
    """``source`` without its hidden-test blocks (markers included): what a student's check cell shows."""
    fixed, _, _ = _blocks(source, HIDDEN_BEGIN, HIDDEN_END, what)
    return "\n".join(line for part in fixed for line in part)


def without_hidden_markers(source: str, what: str = "cell") -> str:
    """``source`` with its hidden tests kept and only their marker lines removed (what the grader runs)."""
    fixed, inner, _ = _blocks(source, HIDDEN_BEGIN, HIDDEN_END, what)
    lines = list(fixed[0])
    for block, after in zip(inner, fixed[1:]):
        lines += block + list(after)
    return "\n".join(lines)


def compiles(source: str) -> str | None:
    """``None`` if ``source`` (IPython magics allowed) is valid Python, else the syntax error in one line."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError as e:
        return f"line {e.lineno}: {e.msg}"
    return None


@dataclass
class Extraction:
    """What a student wrote in an exercise cell's slots, and what they changed outside them."""

    solutions: list[str | None]  # None: the stub is still there (not attempted); "": merged into the slot before
    outside: list[str]  # one line per edit outside the slots (dropped when grading)


def extract_solutions(template: Template, student: str) -> Extraction:
    """Align the student's cell with the released one line by line: lines that replace or surround a stub belong
    to that slot; any other difference is an edit outside the solution blocks (reported, then dropped)."""
    released = template.released().split("\n")
    stubs: dict[int, int] = {}  # released line -> slot
    line = len(template.fixed[0])
    for slot in range(template.slots):
        stubs[line] = slot
        line += 1 + len(template.fixed[slot + 1])
    mine = student.split("\n")
    matcher = difflib.SequenceMatcher(None, [x.rstrip() for x in released], [x.rstrip() for x in mine],
                                      autojunk=False)
    taken: list[list[str]] = [[] for _ in range(template.slots)]
    outside: list[str] = []
    merged: set[int] = set()
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                if i in stubs:
                    taken[stubs[i]].append(mine[j])
            continue
        inside = [stubs[i] for i in range(i1, i2) if i in stubs]
        if not inside and tag == "insert":
            inside = [stubs[i] for i in (i1 - 1, i1) if i in stubs][:1]
        if inside:
            taken[inside[0]].extend(mine[j1:j2])  # adjacent stubs replaced at once: the first slot gets it all
            merged.update(inside[1:])
        fixed_lines = [i for i in range(i1, i2) if i not in stubs]
        if fixed_lines:
            outside.append(f"line {fixed_lines[0] + 1} of the released cell ({released[fixed_lines[0]].strip()!r}) "
                           f"was {'changed' if j2 > j1 else 'deleted'}")
        elif not inside and j2 > j1:
            outside.append(f"line {j1 + 1} ({mine[j1].strip()!r}) was added outside the solution")
    solutions: list[str | None] = []
    for slot, lines in enumerate(taken):
        if slot in merged and not lines:
            solutions.append("")
            continue
        text = "\n".join(lines)
        blank = not text.strip() or [x.strip() for x in lines if x.strip()] == [template.stub(slot).strip()]
        solutions.append(None if blank else text)
    return Extraction(solutions, outside)
