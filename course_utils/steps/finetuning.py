"""The controls of the trained steps: ``finetune`` (the pruning fine-tuning on the dense model) and
``qat-control`` (QAT's training without quantization)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..modules import clone_model
from ..train import History
from .registry import Step, StepContext, register_step
from .training import FINETUNE, QAT, finetune, finetune_key


@register_step
class Finetune(Step):
    """The fine-tuning after pruning, applied to the unpruned model: what pruning costs beyond more training."""

    kind, trained = "finetune", True
    pattern = form = "finetune"
    examples = ("finetune",)
    recipe = FINETUNE

    def key(self, ctx: StepContext) -> dict[str, Any]:
        return finetune_key(self.recipe, ctx.family)

    def start(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return clone_model(parent)

    def train(self, model: nn.Module, parent: nn.Module, ctx: StepContext) -> History:
        return finetune(model, ctx.bundle, ctx.family, ctx.seed, ctx.smoke, ctx.device, self.recipe)


@register_step
class QatControl(Finetune):
    """QAT's training without quantization: what QAT gains beyond one more epoch."""

    kind = pattern = form = "qat-control"
    examples = ("qat-control",)
    recipe = QAT
