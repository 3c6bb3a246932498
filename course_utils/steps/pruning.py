"""Pruning steps: ``unstructured-N`` (one-shot global magnitude), ``gradual-N`` (the sparsity grows during the
fine-tuning) and ``structured-N`` (heads and FFN neurons, or channels, removed); each fine-tuned with FINETUNE."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..modules import clone_model
from ..pruning import GradualPruner, global_prune, structured_prune
from ..train import History
from .registry import Step, StepContext, register_step
from .training import FINETUNE, GRADUAL, finetune, finetune_key, finetune_steps


class _Percent(Step):
    pattern = r"(?P<percent>\d{1,2})"

    def check(self) -> None:
        if not 1 <= int(self.args["percent"]) <= 99:
            raise ValueError(f"step {self.text!r} needs a percentage from 1 to 99")

    @property
    def amount(self) -> float:
        return int(self.args["percent"]) / 100

    def key(self, ctx: StepContext) -> dict[str, Any]:
        return finetune_key(FINETUNE, ctx.family)

    def train(self, model: nn.Module, parent: nn.Module, ctx: StepContext) -> History:
        return finetune(model, ctx.bundle, ctx.family, ctx.seed, ctx.smoke, ctx.device, FINETUNE)


@register_step
class Unstructured(_Percent):
    """Global magnitude pruning of N% of the weights at once, then the fine-tuning with the masks fixed."""

    kind, trained = "unstructured", True
    pattern, form = r"unstructured-" + _Percent.pattern, "unstructured-N (N a percentage)"
    examples = ("unstructured-50", "unstructured-70", "unstructured-90")

    def start(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return global_prune(clone_model(parent), self.amount)


@register_step
class Gradual(_Percent):
    """Dense with all-ones masks that grow to N% during the fine-tuning (``GradualPruner``, Zhu & Gupta's ramp)."""

    kind, trained = "gradual", True
    pattern, form = r"gradual-" + _Percent.pattern, "gradual-N"

    def key(self, ctx: StepContext) -> dict[str, Any]:
        return {**super().key(ctx), "gradual": GRADUAL}

    def start(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return global_prune(clone_model(parent), 0.0)

    def train(self, model: nn.Module, parent: nn.Module, ctx: StepContext) -> History:
        ramp = max(1, int(GRADUAL["ramp_fraction"] * finetune_steps(ctx.bundle, ctx.family, ctx.smoke)))
        pruner = GradualPruner(model, self.amount, total_steps=ramp, frequency=GRADUAL["frequency"])
        return finetune(model, ctx.bundle, ctx.family, ctx.seed, ctx.smoke, ctx.device, FINETUNE, after_step=pruner)


@register_step
class Structured(_Percent):
    """N% of the attention heads and FFN neurons (ViT) or channels (ConvNet) removed, then the fine-tuning."""

    kind, trained = "structured", True
    pattern, form = r"structured-" + _Percent.pattern, "structured-N"
    examples = ("structured-50",)

    def start(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return structured_prune(parent, self.amount)
