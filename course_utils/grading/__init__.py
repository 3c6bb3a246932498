"""The course's grader: student versions, trustworthy grading of submissions, validation, self-checks.

``python -m course_utils.grading release|grade|validate|check|merge`` (see :mod:`.cli`), or the functions below.
The package is split by concern: :mod:`.surgery` (solution blocks and hidden tests in cell sources),
:mod:`.layout` (which cells are set-up, exercise, check; the student version), :mod:`.manual` (written
answers graded by hand with a rubric, merged back), :mod:`.submission` (what a
student's notebook contributes, tampering, suspicious code), :mod:`.sandbox` and :mod:`.worker` (the box a
kernel runs in), :mod:`.runner` (time limits from outside), :mod:`.core` (rebuild, run, judge), :mod:`.report`
(gradebook and feedback) and :mod:`.api`.

Names are imported on first use: the worker process, which imports this package first, then starts faster
(nbformat alone takes seconds to import on a busy machine, and every submission starts a worker).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "GradeReport": "api", "check": "api", "grade": "api", "layouts": "api", "release": "api", "validate": "api",
    "STATUSES": "core", "Result": "core",
    "Layout": "layout", "instructor_layout": "layout", "student_notebook": "layout", "student_version": "layout",
    "merge": "manual", "Question": "manual",
    "COLUMNS": "report", "Row": "report", "read_gradebook": "report",
    "GraderError": "runner", "Limits": "runner",
    "Sandbox": "sandbox", "probe": "sandbox",
    "BEGIN": "surgery", "END": "surgery", "HIDDEN_BEGIN": "surgery", "HIDDEN_END": "surgery", "STUB": "surgery",
    "strip_hidden": "surgery", "strip_solutions": "surgery",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
