"""The registry of recipe steps: every kind of step the zoo can apply is one registered :class:`Step` subclass.

A recipe such as ``"student-kd+structured-50+dynamic-int8"`` is a chain of steps. Each kind of step names itself
(``kind``), gives the grammar of its text (``pattern``, a regular expression that must match the whole step) and a
readable ``form`` for error messages, and says what it does: a *trained* step builds an untrained starting point
(``start``) that ``train`` fits and the zoo keeps in a checkpoint keyed by ``key``; a *post-training* step
transforms its parent in seconds (``apply``) and is recomputed every time. Parsing, the list of valid steps in
error messages and the sweep's regimes all come from this registry, so a new kind of step is one new module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from ..data import DataBundle
from ..train import History


@dataclass(frozen=True)
class StepContext:
    """Where a step runs: the data, the family and norm of the baseline, the seeds and the device."""

    bundle: DataBundle
    family: str
    norm: str
    seed: int
    smoke: bool = False
    device: str = "cpu"
    student_size: str | None = None


@dataclass(frozen=True)
class Step:
    """One step of a recipe, as written (``text``) with the arguments its ``pattern`` captured (``args``)."""

    text: str
    args: dict[str, str]

    kind: ClassVar[str] = ""
    pattern: ClassVar[str] = ""
    form: ClassVar[str] = ""
    examples: ClassVar[tuple[str, ...]] = ()
    trained: ClassVar[bool] = False
    first_only: ClassVar[bool] = False  # must be the first step of a recipe (a student replaces the model)

    def check(self) -> None:
        """Refuse arguments the pattern admits but the step does not (a ValueError naming the allowed ones)."""

    def key(self, ctx: StepContext) -> dict[str, Any]:
        """What, besides the baseline and the chain, identifies this trained step's checkpoint."""
        raise NotImplementedError(f"{self.kind} is a post-training step: it has no checkpoint")

    def start(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        """The untrained starting point (cheap and deterministic, so a checkpoint can load into it)."""
        raise NotImplementedError(f"{self.kind} is a post-training step: use apply")

    def train(self, model: nn.Module, parent: nn.Module, ctx: StepContext) -> History:
        """Fit ``start``'s model in place (``parent`` is the model the step started from, e.g. a teacher)."""
        raise NotImplementedError(f"{self.kind} is a post-training step: use apply")

    def apply(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        """A post-training step's result: a new model made from ``parent``."""
        raise NotImplementedError(f"{self.kind} is a trained step: use start and train")


STEPS: dict[str, type[Step]] = {}


def register_step(cls: type[Step]) -> type[Step]:
    """Class decorator: add a kind of step to the registry (its ``kind`` must be new, its pattern non-empty)."""
    if not cls.kind or not cls.pattern or not cls.form:
        raise ValueError(f"{cls.__name__} needs a kind, a pattern and a form")
    if cls.kind in STEPS:
        raise ValueError(f"a step of kind {cls.kind!r} is already registered ({STEPS[cls.kind].__name__})")
    re.compile(cls.pattern)
    STEPS[cls.kind] = cls
    return cls


def step_forms() -> str:
    """Every valid step form, for error messages and docs."""
    return ", ".join(cls.form for cls in STEPS.values())


def step_examples() -> tuple[str, ...]:
    return tuple(e for cls in STEPS.values() for e in cls.examples)


def parse_step(text: str) -> Step:
    """The registered step that ``text`` spells, with its arguments checked; a ValueError lists every form."""
    for cls in STEPS.values():
        m = re.fullmatch(cls.pattern, text)
        if m is not None:
            step = cls(text, {k: v for k, v in m.groupdict().items() if v is not None})
            step.check()
            return step
    raise ValueError(f"step {text!r} is not valid; steps are {step_forms()}; e.g. {list(step_examples())}")
