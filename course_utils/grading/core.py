"""Grading one notebook: rebuild it from the instructor's copy, run it, and turn what happened into results.

A pass needs positive evidence. The grader adds two lines to each check cell, printing fresh random tokens the
kernel has never seen: one at the end of the ``with exercise(...)`` body (the whole check ran, even if a solution
made ``exercise`` swallow failures) and one at the end of the cell (no exception escaped). An exercise passes only
if its check cell finished without error, its last printed line is the second token and the first one came just
before. A missing output, a timeout, a swallowed exception or a dead kernel is never a pass. After a timeout or a
dead kernel the notebook is run again with the offending solution replaced by the stub, so one runaway exercise
costs only its own points.

What a solution does to its own kernel cannot change a verdict (see :mod:`.guard`): the kernel's first cell installs
an audit hook holding a secret key, the set-up ends by sealing the checking environment, and after every exercise
cell and every check cell the hook answers an authenticated attestation. An exercise passes only if the attestation
after its check is good too. When one is missing, forged or says ``tampered``, the exercise whose cells ran since
the last good one is ``tampered`` (0 points, flagged for review) and the notebook is graded again in a fresh kernel
without that solution; the exercises graded again are flagged too.
"""

from __future__ import annotations

import ast
import secrets
from dataclasses import dataclass, field
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_notebook

from ..checks import STUB_MESSAGE
from .guard import ATTEST, PREFIX, SEAL, sign
from .layout import Exercise, Layout
from .runner import GraderError, Limits, RunResult, execute
from .sandbox import Sandbox

PASSED, FAILED, ERROR, TIMEOUT, MISSING, TAMPERED = "passed", "failed", "error", "timeout", "missing", "tampered"
STATUSES = (PASSED, FAILED, ERROR, TIMEOUT, MISSING, TAMPERED)
_FAILURES = ("ExerciseFailed", "AssertionError")


@dataclass
class Result:
    """One gradebook line: an exercise's outcome, or a tampering report (worth 0 of 0)."""

    exercise: str
    points: float
    max_points: float
    status: str
    message: str = ""


@dataclass
class Outcome:
    """A graded notebook: its results and the executed (sanitized) notebook."""

    results: list[Result]
    executed: NotebookNode | None = None
    runs: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Program:
    """The notebook the worker runs, with each cell's role and exercise, and each check's token."""

    cells: list[tuple[str, int | None, str]]  # (role, exercise ordinal, source)
    tokens: dict[int, tuple[str | None, str]]  # check cell index -> (token ending the with-body, token ending the cell)
    key: bytes = b""  # the guard's secret (handed to the kernel through a file it deletes)
    nonces: dict[int, str] = field(default_factory=dict)  # attest cell index -> its nonce

    #: Roles of the grader's own cells, which students never see.
    INTERNAL = ("guard", "seal", "attest")

    def index(self, role: str, ordinal: int) -> int:
        return next(i for i, (r, k, _) in enumerate(self.cells) if r == role and k == ordinal)

    def runner_roles(self) -> list[str]:
        """Roles as the runner sees them: the guard and the seal are set-up (no per-cell limit)."""
        return ["setup" if role in ("guard", "seal") else role for role, _, _ in self.cells]

    def attested(self, run: RunResult, index: int) -> tuple[bool | None, str]:
        """Whether the attest cell ``index`` vouches for the environment: ``(None, "")`` if it did not run,
        ``(True, "")`` if it did, ``(False, why)`` if its answer is missing, forged or says tampered."""
        record = run.records.get(index)
        if record is None:
            return None, ""
        nonce = self.nonces[index]
        line = next((x for x in reversed(record.last) if x.startswith(f"{PREFIX}:{nonce}:")), None)
        if record.status != "ok" or line is None:
            return False, "the checking environment no longer answers (it was replaced or silenced)"
        parts = line.split(":")
        if len(parts) != 5 or not secrets.compare_digest(parts[4], sign(self.key, nonce, parts[2], parts[3])):
            return False, "the checking environment's answer was forged"
        if parts[2] != "ok":
            return False, parts[3] or "the checking environment was changed"
        return True, ""

    def notebook(self) -> NotebookNode:
        nb = new_notebook(cells=[new_code_cell(source) for _, _, source in self.cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        return nb


GUARD_CELL = "from course_utils.grading import guard as _course_guard\n_course_guard.install()\ndel _course_guard"


#: Libraries a solution may import, loaded before the seal: importing torch loads shared libraries (ctypes), registers
#: atexit functions and patches ``inspect.getfile``, which after the seal would read as tampering. Loaded here, a
#: solution's ``import torch`` only binds a name. (A library outside this list imported in a solution is still flagged
#: for review.)
PREIMPORT = ("numpy", "torch", "torch.nn", "torch.nn.functional", "scipy.stats", "pandas")
SEAL_CELL = ("import importlib as _course_importlib\nfor _course_name in " + repr(PREIMPORT) + ":\n"
             "    try:\n        _course_importlib.import_module(_course_name)\n    except ImportError:\n        pass\n"
             f"import sys as _course_sys\n_course_sys.audit({SEAL!r})\n"
             "del _course_sys, _course_importlib, _course_name")


def _attest_cell(nonce: str) -> str:
    return f"import sys as _course_sys\n_course_sys.audit({ATTEST!r}, {nonce!r})\ndel _course_sys"


def build_program(layout: Layout, solutions: dict[int, list[str | None]], stubbed: set[int]) -> Program:
    """The guard, the set-up cells and the seal, then each exercise cell (the student's slots in the instructor's
    template) and its instructor check (hidden tests restored, token lines added), each followed by an attest cell."""
    cells: list[tuple[str, int | None, str]] = [("guard", None, GUARD_CELL)]
    cells += [("setup", None, layout.cell(i).source) for i in layout.setup_ids]
    cells.append(("seal", None, SEAL_CELL))
    tokens: dict[int, tuple[str | None, str]] = {}
    nonces: dict[int, str] = {}

    def attest(ordinal: int) -> None:
        nonces[len(cells)] = secrets.token_hex(16)
        cells.append(("attest", ordinal, _attest_cell(nonces[len(cells)])))

    for e in layout.exercises:
        slots = solutions.get(e.ordinal, [None] * e.template.slots)
        cells.append(("exercise", e.ordinal, e.template.render([None] * e.template.slots if e.ordinal in stubbed
                                                               else list(slots))))
        attest(e.ordinal)
        source, inner, outer = with_tokens(e.check_source)
        tokens[len(cells)] = (inner, outer)
        cells.append(("check", e.ordinal, source))
        attest(e.ordinal)
    return Program(cells, tokens, secrets.token_bytes(32), nonces)


def tampering(program: Program, run: RunResult, settled: set[int]) -> tuple[int, str] | None:
    """``(ordinal, why)`` of the first exercise whose cells changed the checking environment, if any did."""
    for index, (role, k, _) in enumerate(program.cells):
        if role == "attest" and k is not None and k not in settled:
            good, why = program.attested(run, index)
            if good is False:
                return k, why
    return None


def _token() -> str:
    return f"grading-token-{secrets.token_hex(16)}"


def with_tokens(check: str) -> tuple[str, str | None, str]:
    """``(source, inner, outer)``: the check cell with a line printing ``inner`` at the end of its last
    ``with exercise(...)`` body (proof the whole body ran, even if ``exercise.__exit__`` were made to swallow a
    failure) and a line printing ``outer`` at the end of the cell (proof no exception escaped)."""
    outer, lines = _token(), check.rstrip().split("\n")
    try:
        tree = ast.parse(check)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    blocks = [node for node in tree.body if isinstance(node, ast.With) and any(
        isinstance(item.context_expr, ast.Call) and "exercise" in ast.unparse(item.context_expr.func)
        for item in node.items)]
    inner = None
    if blocks and blocks[-1].body[0].lineno > blocks[-1].lineno and blocks[-1].end_lineno:
        block, inner = blocks[-1], _token()
        first = lines[block.body[0].lineno - 1]
        indent = first[: len(first) - len(first.lstrip())]
        lines.insert(block.end_lineno, f"{indent}print({inner!r})")
    return "\n".join([*lines, f"print({outer!r})"]), inner, outer


def _classify(e: Exercise, program: Program, run: RunResult) -> tuple[str, str]:
    """(status, message) of exercise ``e`` in a run that reached its check cell or ended before it."""
    index, at = program.index("exercise", e.ordinal), program.index("check", e.ordinal)
    cell, check = run.records.get(index), run.records.get(at)
    if cell is not None and cell.status != "ok":
        if cell.ename == "NotImplementedError" and STUB_MESSAGE in cell.evalue:
            return FAILED, "not attempted: the solution still raises NotImplementedError"
        return ERROR, f"your exercise cell raised {cell.ename}: {cell.evalue}"
    if check is None:
        return ERROR, f"not graded: the run stopped before this check ({run.message or 'no reason given'})"
    if check.status != "ok":
        if check.ename in _FAILURES:
            return FAILED, check.evalue or f"{check.ename} (no message)"
        return ERROR, f"{check.ename}: {check.evalue}"
    inner, outer = program.tokens[at]
    if check.last and check.last[-1] == outer and (inner is None or inner in check.last):
        good, why = program.attested(run, at + 1)
        if good is None:
            return ERROR, f"not graded: the run stopped after this check ({run.message or 'no reason given'})"
        return (PASSED, "") if good else (TAMPERED, why)
    return FAILED, "the check finished without confirming the result (its output was swallowed or redirected)"


def sanitize(program: Program, layout: Layout, cells: list[dict[str, Any]] | None) -> NotebookNode:
    """The executed notebook as students may see it: public checks only, no token, no tracebacks of checks."""
    import nbformat

    nb = program.notebook()
    cells = cells or []
    for i, cell in enumerate(nb.cells):
        role, k, _ = program.cells[i]
        if role == "check" and k is not None:
            cell.source = layout.exercises[k].public_check
        if role not in Program.INTERNAL and i < len(cells):
            outputs = nbformat.from_dict(cells[i]).get("outputs", [])
            tokens = program.tokens.get(i, ())
            for out in outputs:
                if tokens and out.get("output_type") == "stream":
                    out["text"] = "".join(line for line in out.get("text", "").splitlines(True)
                                          if line.strip() not in tokens)
                if role == "check" and out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', '')}: {out.get('evalue', '')}"]
            cell.outputs = [o for o in outputs if o.get("output_type") != "stream" or o.get("text")]
            cell.execution_count = cells[i].get("execution_count")
    nb.cells = [c for c, (role, _, _) in zip(nb.cells, program.cells) if role not in Program.INTERNAL]
    return nb


def _environment(program: Program, run: RunResult, name: str) -> None:
    """GraderError when the grader's own cells failed: the kernel's environment is broken (e.g. it cannot import
    the course package), which is never the student's doing: their code has not run yet."""
    for index, (role, _, _) in enumerate(program.cells):
        record = run.records.get(index)
        if role in ("guard", "seal") and record is not None and record.status != "ok":
            raise GraderError(f"{name}: the grading kernel's environment is broken ({record.ename}: "
                              f"{record.evalue}); no student code had run")
        if role == "setup" and record is not None and record.status != "ok":
            raise GraderError(f"{name}: the instructor's set-up cells fail in the grading kernel "
                              f"({record.ename}: {record.evalue}); no student code had run")


def grade_layout(layout: Layout, solutions: dict[int, list[str | None]], limits: Limits, sandbox: Sandbox,
                 hide: list[str], flags: dict[int, list[str]] | None = None) -> Outcome:
    """Grade one notebook's solutions; re-runs after each timeout, dead kernel or tampering with that solution
    stubbed."""
    settled: dict[int, tuple[str, str]] = {}
    tampered: list[int] = []
    outcome = Outcome([])
    program, run = build_program(layout, solutions, set()), RunResult()
    attempts, starts = 0, 0
    while attempts <= len(layout.exercises):
        program = build_program(layout, solutions, set(settled))
        run = execute([source for _, _, source in program.cells], program.runner_roles(), limits, sandbox, hide,
                      guard_key=program.key.hex())
        outcome.runs, outcome.seconds = outcome.runs + 1, outcome.seconds + run.seconds
        if run.reason in ("fatal", "crashed") and not run.records and run.stopped_at is None:
            starts += 1  # no cell ran: the box or the kernel did not start, which no student code can cause
            if starts < 3:
                continue
            raise GraderError(f"{layout.name}: the grading kernel could not start ({run.message})")
        _environment(program, run, layout.name)
        attempts += 1
        found = tampering(program, run, set(settled))
        if found is not None:
            k, why = found
            tampered.append(k)
            settled[k] = (TAMPERED, f"your solution changed the checking environment ({why}): 0 points pending "
                                    "review; the other exercises were graded again without it")
            continue
        if not run.reason:
            break
        role, k, _ = program.cells[run.stopped_at] if run.stopped_at is not None else ("setup", None, "")
        if k is None or k in settled:  # the instructor's set-up (or a check run on a stub) did not finish
            where = "the instructor's set-up cells" if k is None else \
                f"the check of exercise {layout.exercises[k].number} run on the stub"
            run.message = f"{run.message} in {where}"
            outcome.notes.append(run.message)
            break
        status = TIMEOUT if run.reason == "timeout" else ERROR
        what = "your solution" if role == "exercise" else "the check of your solution"
        settled[k] = (status, f"{run.message} while running {what}; the other exercises were graded without it")
    for e in layout.exercises:
        if e.ordinal in settled:
            status, message = settled[e.ordinal]
        else:
            status, message = _classify(e, program, run)
        review = list((flags or {}).get(e.ordinal, []))
        if status == TAMPERED:
            review.append("tampering with the checking environment")
        review += [f"exercise {layout.exercises[t].number}'s solution tampered with the checking environment; "
                   "this exercise was graded again in a fresh kernel without it" for t in tampered if t < e.ordinal]
        if review:
            message = f"{message + ' | ' if message else ''}FLAGGED FOR REVIEW: {'; '.join(review)}"
        outcome.results.append(Result(e.number, e.points if status == PASSED else 0.0, e.points, status, message))
    outcome.executed = sanitize(program, layout, run.cells)
    return outcome
