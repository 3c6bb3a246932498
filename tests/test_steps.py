"""The recipe-step registry: every step kind is one registered class; unknown steps are refused up front; a new
kind plugs in without touching the zoo; the checkpoint keys are the ones the zoo used before the registry."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
import torch
from torch import nn

from course_utils import steps, zoo
from course_utils.steps import STEPS, Step, StepContext, parse_step, register_step, step_forms

#: The checkpoint key of each trained step as the zoo wrote it before the registry (dict recipes, regex branches).
_OLD_FT = {"epochs": 2, "lr": 2e-3, "weight_decay": 0.05, "augment": "shift"}
_OLD_QAT = {"epochs": 1, "lr": 5e-4, "weight_decay": 0.05, "augment": "none"}
OLD_KEYS = {
    "unstructured-70": {"step": _OLD_FT, "subset": None},
    "structured-50": {"step": _OLD_FT, "subset": None},
    "gradual-80": {"step": _OLD_FT, "subset": None, "gradual": {"ramp_fraction": 0.75, "frequency": 5}},
    "finetune": {"step": _OLD_FT, "subset": None},
    "qat-control": {"step": _OLD_QAT, "subset": None},
    "qat-w4a8": {"step": _OLD_QAT, "subset": None},
}


def test_every_example_parses_to_its_kind():
    kinds = {parse_step(e).kind for cls in STEPS.values() for e in cls.examples}
    assert kinds <= set(STEPS) and {"unstructured", "structured", "qat", "ptq", "int8", "student"} <= kinds
    assert parse_step("qat-w4a8").bits == (4, 8) and parse_step("static-int8").args == {"mode": "static"}
    assert [s.kind for s in zoo.parse_steps("student-crd+kd+gradual-70+bfloat16")] == \
        ["student", "gradual", "half"]


@pytest.mark.parametrize("bad", ["pruned", "unstructured-", "qat-w9a8", "int8", "student-", "dynamic-int4"])
def test_an_unknown_step_is_refused_naming_every_form(bad):
    with pytest.raises(ValueError) as e:
        zoo.get_variant(bad)  # refused before any data are loaded or any model trained
    for cls in STEPS.values():
        assert cls.form in str(e.value)


@pytest.mark.parametrize("text,key", OLD_KEYS.items())
def test_checkpoint_keys_are_unchanged(text, key):
    ctx = StepContext(None, "vit", "dyt", 0)  # type: ignore[arg-type]
    assert parse_step(text).key(ctx) == key
    assert zoo.FINETUNE.key() == _OLD_FT and zoo.QAT.key() == _OLD_QAT


def test_student_key_and_order():
    ctx = StepContext(None, "cnn", "dyt", 0)  # type: ignore[arg-type]
    key = parse_step("student-kd").key(ctx)["student"]
    assert key["size"] == "tiny" and key["epochs"] == 8 and key["losses"] == {"ce": 0.5, "kd": 0.5}
    with pytest.raises(ValueError, match="must come first"):
        zoo.parse_steps("structured-50+student-kd")


def test_a_new_step_kind_is_one_registered_class():
    """What the closing note shows as a diff: a toy post-training step, registered, used by the zoo, removed."""

    class Scale(Step):
        kind = "toy-scale"
        pattern, form = r"scale-(?P<factor>\d)", "scale-K (K a digit)"
        examples: ClassVar[tuple[str, ...]] = ("scale-2",)

        def apply(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
            return nn.Sequential(parent, nn.Identity()) if self.args["factor"] == "1" else _Times(parent, 2.0)

    with pytest.raises(ValueError, match="not valid"):
        zoo.parse_steps("structured-50+scale-2")
    register_step(Scale)
    try:
        assert [s.kind for s in zoo.parse_steps("structured-50+scale-2")] == ["structured", "toy-scale"]
        assert "scale-K" in step_forms()
        with pytest.raises(ValueError, match="already registered"):
            register_step(Scale)
    finally:
        del STEPS["toy-scale"]
    assert "scale-K" not in step_forms()


class _Times(nn.Module):
    def __init__(self, inner: nn.Module, k: float) -> None:
        super().__init__()
        self.inner, self.k = inner, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.k


def test_a_step_class_without_grammar_is_refused():
    class Nameless(Step):
        pass

    with pytest.raises(ValueError, match="kind, a pattern and a form"):
        register_step(Nameless)


def test_the_zoo_names_no_step_kind_itself():
    """No branch on a step's text is left in the zoo: the registry decides what a step is and does."""
    source = (steps.__file__.replace("steps/__init__.py", "zoo.py"))
    text = open(source).read()
    assert not re.search(r"startswith\(\"(unstructured|structured|gradual|qat|ptq|student)", text)
    assert "group(" not in text and "recipe is FINETUNE" not in text


def test_the_sweeps_regimes_are_registered_steps():
    from course_utils import sweep

    for regime in (*sweep.REGIMES, *sweep.SMOKE_REGIMES, *sweep.ALPHA_REGIMES):
        assert [s.text for s in zoo.parse_steps(regime)] == [regime]
