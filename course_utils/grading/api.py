"""The grader's four jobs as functions: release, grade, validate, check (the CLI is a thin layer over them)."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import nbformat

from ..paths import REPO_ROOT, check_path
from ..running import discover
from . import manual
from .core import ERROR, FAILED, MISSING, PASSED, TAMPERED, Result, grade_layout
from .layout import (
    RUBRIC_BEGIN,
    Exercise,
    Layout,
    instructor_layout,
    read_notebook,
    self_check_layout,
    student_notebook,
)
from .report import PARTIAL, Row, write_outputs
from .runner import Limits, kill_all, resume
from .sandbox import probe
from .submission import read_submission

if TYPE_CHECKING:
    from ..designs import DesignResult

NOTEBOOKS = REPO_ROOT / "notebooks"
T = TypeVar("T")


@dataclass
class GradeReport:
    """What ``grade`` did: every gradebook row, where it wrote, how long it took, how the kernels were boxed."""

    rows: list[Row]
    out: Path
    seconds: float
    protections: str
    warnings: list[str] = field(default_factory=list)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is not valid; it must be an integer >= 1")
    return value


def _seconds(name: str, value: object, unit: str = "seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is not valid; it must be a number of {unit} > 0")
    return float(value)


def _writable_folder(name: str, value: object) -> Path:
    """``value`` as a folder the grader can write to (created if missing); ValueError naming ``name`` otherwise,
    before any kernel starts."""
    path = check_path(name, value)
    assert path is not None
    path = path.expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}={value}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_file = path / f".grading-write-test-{os.getpid()}"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        raise ValueError(f"{name}={value}: cannot write there ({e.strerror or e})") from e
    return path


def _folder(name: str, value: object) -> Path:
    path = check_path(name, value)
    assert path is not None
    if not path.is_dir():
        raise ValueError(f"{name}={value}: no such folder")
    return path.resolve()


def limits(timeout_cell: float = 60.0, timeout_notebook: float = 600.0, memory_gb: float = 6.0) -> Limits:
    """Checked :class:`Limits` (ValueError naming the parameter)."""
    memory = _seconds("memory_gb", memory_gb, "gigabytes")
    return Limits(_seconds("timeout_cell", timeout_cell), _seconds("timeout_notebook", timeout_notebook),
                  int(memory * (1 << 30)))


def layouts(notebooks_dir: os.PathLike | str = NOTEBOOKS) -> list[Layout]:
    """The instructor's numbered notebooks, parsed; ValueError if there are none or one breaks a convention."""
    folder = _folder("notebooks_dir", notebooks_dir)
    found = [instructor_layout(nb) for nb in discover(folder)]
    if not found:
        raise ValueError(f"notebooks_dir={notebooks_dir}: no numbered notebooks (NN_name.ipynb) in it")
    return found


def release(out: os.PathLike | str = REPO_ROOT / "student", notebooks_dir: os.PathLike | str = NOTEBOOKS) -> list[Path]:
    """Student versions of every numbered notebook in ``out``: solutions stubbed, hidden tests removed, outputs
    cleared, cell ids kept. Returns the files written."""
    target = check_path("out", out)
    assert target is not None
    written = []
    for layout in layouts(notebooks_dir):
        path = target / layout.name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_notebook(layout), os.fspath(path))
        written.append(path)
    return written


def _run_all(workers: int, calls: list[tuple[Callable[..., T], tuple[Any, ...]]]) -> list[T]:
    """Run ``calls`` on ``workers`` threads (each drives one worker process at a time), in order. If one fails or
    the user interrupts, every running box is killed and nothing new starts. With a Dask cluster connected
    (``course_utils.cluster.connect``, the CLI's ``--local-workers``/``--scheduler``), the calls go to its workers
    instead, through ``course_utils.parallel`` like every other job of the course (the workers must see the
    submissions and the instructor's notebooks, e.g. on a shared folder)."""
    from .. import parallel

    if parallel.current_backend() is not None:
        return parallel.run([parallel.call(f, *args, label=f"{f.__name__} {i}") for i, (f, args) in enumerate(calls)],
                            desc="grading", progress=False)
    resume()
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(function, *args) for function, args in calls]
        return [f.result() for f in futures]
    except BaseException:
        kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _grade_one(student: str, path: Path, layout: Layout, lim: Limits, hide: list[str], sandbox: bool,
               design_smoke: bool = False
               ) -> tuple[list[Row], nbformat.NotebookNode | None, list[dict[str, str]]]:
    """Rows (and executed notebook, and the written answers for the TAs' sheet) of one student's notebook; a
    missing or unreadable file costs no kernel."""
    row = lambda r: Row(student, layout.name, r.exercise, r.points, r.max_points, r.status, r.message)  # noqa: E731
    tasks = [e for e in layout.exercises if e.design]
    unanswered = manual.answer_rows(student, layout.name, layout.questions, None)[0]
    if not path.is_file():
        why = f"{layout.name} was not submitted"
        return [Row(student, layout.name, e.number, 0.0, e.points, MISSING, why) for e in layout.exercises] + \
            [Row(student, layout.name, e.design_label, 0.0, e.design_points, MISSING, why) for e in tasks] + \
            unanswered, None, []
    try:
        nb = read_notebook(path, "submitted notebook")
        submission = read_submission(layout, nb)
    except Exception as e:  # noqa: BLE001 - whatever is wrong with one student's file must not stop the others
        cause = e.__cause__ or e
        reason = f"{layout.name} could not be read as a notebook ({type(cause).__name__}: {cause})"[:500]
        return [Row(student, layout.name, x.number, 0.0, x.points, ERROR, reason) for x in layout.exercises] + \
            [Row(student, layout.name, x.design_label, 0.0, x.design_points, ERROR, reason) for x in tasks] + \
            unanswered, None, []
    written, sheet = manual.answer_rows(student, layout.name, layout.questions, nb)
    outcome = grade_layout(layout, submission.solutions, lim, probe(sandbox), hide, submission.flags)
    rows = [row(r) for r in outcome.results]
    rows += [design_row(student, layout.name, e, submission.solutions.get(e.ordinal), design_smoke) for e in tasks]
    rows += [Row(student, layout.name, number, 0.0, 0.0, TAMPERED, message) for number, message in submission.tampered]
    return rows + written, outcome.executed, sheet


def measure_design(e: Exercise, slots: list[str | None] | None, smoke: bool) -> DesignResult | None:
    """What the configuration in a design cell's solution achieves (None when the slot is still the stub): read as a
    literal (never run) and measured by the course on the held-out half of the test set. ValueError when it cannot
    be measured (not a literal, an unknown layer, ...), naming why. The course's models load on first use only."""
    from .. import designs

    assert e.design is not None
    if not slots or slots[0] is None:
        return None
    config = designs.read_config(slots[0], designs.get_design(e.design).variable)
    return designs.evaluate(e.design, config, smoke=smoke, split="held-out")


def design_row(student: str, notebook: str, e: Exercise, slots: list[str | None] | None, smoke: bool) -> Row:
    """The gradebook row of a design task: points in proportion to the targets met (:func:`measure_design`)."""
    what = lambda points, status, message: Row(student, notebook, e.design_label, points,  # noqa: E731
                                               e.design_points, status, message)
    try:
        result = measure_design(e, slots, smoke)
    except ValueError as err:
        return what(0.0, FAILED, f"the configuration was not measured: {err}"[:500])
    if result is None:
        return what(0.0, FAILED, "not attempted: no configuration was written")
    status = PASSED if result.fraction == 1 else PARTIAL if result.fraction > 0 else FAILED
    return what(round(e.design_points * result.fraction, 2), status, result.feedback())


@contextlib.contextmanager
def _no_termination():
    """Hold SIGTERM (delivered right after) while the outputs are written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def preflight() -> None:
    """The grader's own set-up, checked before any kernel starts: the grading kernel's Python must import the
    course package, its check machinery and ipykernel. ``GraderError`` (one line) otherwise: an environment
    problem is never graded as the students' error."""
    import subprocess
    import tempfile

    from .runner import GraderError
    from .sandbox import kernel_environment

    try:
        from jupyter_client.kernelspec import KernelSpecManager

        argv = KernelSpecManager().get_kernel_spec("python3").argv
        python = sys.executable if not argv or argv[0] in ("python", "python3", "{python}") else argv[0]
    except Exception as e:  # noqa: BLE001 - no kernel spec at all is an environment problem too
        raise GraderError(f"no 'python3' Jupyter kernel is installed ({type(e).__name__}: {e})") from e
    with tempfile.TemporaryDirectory(prefix="course-preflight-") as work:
        env = kernel_environment(work)
        try:
            done = subprocess.run([python, "-c", "import ipykernel, course_utils.checks, course_utils.grading.guard"],
                                  capture_output=True, text=True, timeout=120, env=env, cwd=work)
        except (OSError, subprocess.SubprocessError) as e:
            raise GraderError(f"the grading kernel's Python ({python}) cannot run: {e}") from e
    if done.returncode != 0:
        last = (done.stderr.strip().split("\n") or ["no message"])[-1]
        raise GraderError(f"the grading kernel's Python ({python}) cannot import the course package: {last}")


def grade(submissions: os.PathLike | str, out: os.PathLike | str, jobs: int = 2, timeout_cell: float = 60.0,
          timeout_notebook: float = 600.0, notebooks_dir: os.PathLike | str = NOTEBOOKS, memory_gb: float = 6.0,
          sandbox: bool = True, design_smoke: bool = False) -> GradeReport:
    """Grade every student folder in ``submissions`` (one folder per student, notebooks under their usual names)
    and write the gradebook, feedback and executed notebooks to ``out``. Design tasks are measured in full mode
    (smoke mode with ``design_smoke``, for tests: tiny data, meaningless targets). Raises ValueError for bad input and
    ``GraderError`` when the grader itself cannot run; a student's code can cause neither."""
    started = time.monotonic()
    root = _folder("submissions", submissions)
    target = check_path("out", out)
    assert target is not None
    target = target.expanduser().resolve()
    if target == root or root in target.parents:
        raise ValueError(f"out={out} is inside submissions={submissions}; choose a folder outside it")
    workers, lim, series = _count("jobs", jobs), limits(timeout_cell, timeout_notebook, memory_gb), \
        layouts(notebooks_dir)
    target = _writable_folder("out", out)
    students = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"submissions={submissions}: no student folders in it (expected e.g. alice/01_....ipynb)")
    box = probe(sandbox)
    preflight()
    hide = [str(_folder("notebooks_dir", notebooks_dir)), str(root), str(target)]
    done = _run_all(workers, [(_grade_one, (s.name, s / layout.name, layout, lim, hide, sandbox, design_smoke))
                              for s in students for layout in series])
    pairs = [(s, layout) for s in students for layout in series]
    rows = [r for rs, _, _ in done for r in rs]
    sheet = [a for _, _, answers in done for a in answers]
    executed = {(s.name, layout.name): nb for (s, layout), (_, nb, _) in zip(pairs, done) if nb is not None}
    seconds = time.monotonic() - started
    with _no_termination():  # a SIGTERM now waits until every file is written: never half a gradebook
        write_outputs(target, rows, executed, {"protections": box.describe(), "warnings": list(box.warnings),
                                               "seconds": round(seconds, 1), "jobs": workers,
                                               "limits": vars(lim)})
        manual.write_sheet(target, sheet, {layout.name: layout.questions for layout in series if layout.questions})
    return GradeReport(rows, target, seconds, box.describe(), list(box.warnings))


def validate(notebooks_dir: os.PathLike | str = NOTEBOOKS, jobs: int = 2, timeout_cell: float = 60.0,
             timeout_notebook: float = 600.0, sandbox: bool = True) -> list[str]:
    """Problems with the instructor's notebooks (empty: all good): each must score full marks with its own
    solutions, and zero as released; the released version must read back as untouched and unattempted."""
    workers, lim, series = _count("jobs", jobs), limits(timeout_cell, timeout_notebook), layouts(notebooks_dir)
    hide = [str(_folder("notebooks_dir", notebooks_dir))]
    preflight()
    problems: list[str] = []
    for layout in series:
        back = read_submission(layout, student_notebook(layout))
        if back.tampered or any(s != [None] * len(s) for s in back.solutions.values()):
            problems.append(f"{layout.name}: the released version does not read back as unattempted "
                            f"({'; '.join(m for _, m in back.tampered) or 'solutions found'})")
        released = "\n".join(c.source for c in student_notebook(layout).cells)
        leaked = [q.number for q in layout.questions if RUBRIC_BEGIN in released or q.rubric in released]
        if leaked:
            problems.append(f"{layout.name}: the released version shows the rubric of {', '.join(leaked)}")
    for layout in series:
        for e in (e for e in layout.exercises if e.design):
            try:
                measure_design(e, list(e.solutions), smoke=True)
            except ValueError as err:
                problems.append(f"{layout.name}: design task {e.design_label}: the instructor's configuration was "
                                f"not measured: {err}")
    box = probe(sandbox)
    runs = [(layout.name, kind, solutions) for layout in series
            for kind, solutions in (("instructor", {e.ordinal: list(e.solutions) for e in layout.exercises}),
                                    ("released", {}))]
    by_name = {layout.name: layout for layout in series}
    outcomes = _run_all(workers, [(grade_layout, (by_name[name], solutions, lim, box, hide))
                                  for name, _, solutions in runs])
    for (name, kind, _), outcome in zip(runs, outcomes):
        for r in outcome.results:
            if kind == "instructor" and r.status != PASSED:
                problems.append(f"{name}: exercise {r.exercise} scores {r.points:g}/{r.max_points:g} with the "
                                f"instructor's solution ({r.status}: {r.message})")
            if kind == "released" and (r.points > 0 or r.status == PASSED):
                problems.append(f"{name}: exercise {r.exercise} of the released version scores "
                                f"{r.points:g}/{r.max_points:g} without a solution")
    return problems


def check(notebook: os.PathLike | str, timeout_cell: float = 60.0, timeout_notebook: float = 600.0,
          sandbox: bool = True) -> list[Result]:
    """Grade a student's own notebook with the public checks it contains (no hidden tests: they are not there)."""
    path = check_path("notebook", notebook)
    assert path is not None
    if not path.is_file():
        raise ValueError(f"notebook={notebook}: no such file")
    layout = self_check_layout(read_notebook(path, "notebook"), path.name)
    if not layout.exercises:
        raise ValueError(f"notebook={notebook}: no exercise check cells found (cells starting with "
                         "'# NBVAL_CHECK_OUTPUT' that call exercise(...))")
    outcome = grade_layout(layout, {}, limits(timeout_cell, timeout_notebook), probe(sandbox),
                           [str(path.resolve().parent)])
    return [r for r in outcome.results if r.status != TAMPERED]
