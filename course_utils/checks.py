"""Check cells: immediate, readable feedback on an exercise, and a clear signal for the grader.

A check cell of the series looks like this::

    # NBVAL_CHECK_OUTPUT
    # POINTS: 2
    with exercise(1, "the DyT forward pass"):
        out = my_dyt(x)
        expect(out.shape == x.shape, f"the output has shape {tuple(out.shape)}; it must keep the input's shape")

- On success it prints one line, ``Exercise 1 passed: the DyT forward pass.`` (what nbval compares).
- A wrong answer fails loudly with an ``ExerciseFailed`` whose message names the mistake.
- A stub that still raises ``NotImplementedError`` prints "not attempted yet" and lets Run All (and papermill)
  go on. Under the grader (``COURSE_GRADING=1``) it fails instead, so an unattempted exercise never earns points.
- A later cell that runs the student's function takes it through :func:`mine_or_reference`: while the stub still
  raises ``NotImplementedError`` the reference runs instead, and the cell says so in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType
from typing import Any

#: Environment variable the grader sets in the kernel it starts.
GRADING_ENV = "COURSE_GRADING"
#: The line the student version puts in place of a solution.
STUB_MESSAGE = "replace this line with your solution"


class ExerciseFailed(AssertionError):
    """A check found a mistake; the message says which."""


def grading() -> bool:
    """Whether this kernel runs under the course's grader."""
    return os.environ.get(GRADING_ENV, "") == "1"


def expect(condition: object, message: str) -> None:
    """Fail the current exercise with ``message`` unless ``condition`` holds (an ``assert`` that ``-O`` keeps)."""
    if not condition:
        raise ExerciseFailed(message)


class exercise:  # noqa: N801 - used as a statement: ``with exercise(1, "..."):``
    """Context manager around a check: prints the pass line, names mistakes, tolerates a stub outside grading."""

    def __init__(self, number: int | str, title: str) -> None:
        self.number, self.title = number, title

    def __enter__(self) -> exercise:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        label = f"Exercise {self.number}"
        if exc_type is None:
            print(f"{label} passed: {self.title}.")
            return False
        if issubclass(exc_type, NotImplementedError):
            if grading():
                raise ExerciseFailed(f"{label} was not attempted: the solution still raises NotImplementedError")
            print(f"{label} not attempted yet ({self.title}): replace `raise NotImplementedError(...)` with your "
                  "solution and run this check again. The rest of the notebook does not need it.")
            return True
        if issubclass(exc_type, AssertionError):
            return False  # ExerciseFailed or a plain assert: the message already names the mistake
        if issubclass(exc_type, Exception):
            raise ExerciseFailed(f"{label}: your code raised {exc_type.__name__}: {exc}") from exc
        return False


def mine_or_reference(mine: Callable[..., Any], reference: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``mine`` where the student wrote it, else ``reference`` (while ``mine`` still raises ``NotImplementedError``),
    saying once which one ran: later cells run the student's code, and an unsolved notebook still runs end to end."""
    told: list[bool] = []

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return mine(*args, **kwargs)
        except NotImplementedError:
            if not told:
                told.append(True)
                print(f"{what}: your function is not written yet, so this cell uses the reference "
                      f"{reference.__module__}.{reference.__qualname__}")
            return reference(*args, **kwargs)

    return run
