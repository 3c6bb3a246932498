"""Quantization steps: ``qat-wBaB`` (trained), and the post-training ``ptq-wBaB`` (fake quantization),
``dynamic-int8``/``static-int8`` (torchao's real int8) and ``float16``/``bfloat16``."""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import quantization as Q
from ..train import History
from .registry import Step, StepContext, register_step
from .training import QAT, calibration_images, finetune, finetune_key

_BITS = r"w(?P<weight_bits>[2-8])a(?P<act_bits>[2-8])"


class _Bits(Step):
    @property
    def bits(self) -> tuple[int, int]:
        return int(self.args["weight_bits"]), int(self.args["act_bits"])

    def _calibrated(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return Q.calibrate(Q.fake_quantize_model(parent, *self.bits), calibration_images(ctx.bundle))


@register_step
class Qat(_Bits):
    """Quantization-aware training: fake-quantized weights (B bits) and inputs (B bits), calibrated, then QAT."""

    kind, trained = "qat", True
    pattern, form = "qat-" + _BITS, "qat-wBaB (B in 2..8)"
    examples = ("qat-w4a8",)

    def key(self, ctx: StepContext) -> dict[str, Any]:
        return finetune_key(QAT, ctx.family)

    def start(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return self._calibrated(parent, ctx)

    def train(self, model: nn.Module, parent: nn.Module, ctx: StepContext) -> History:
        return finetune(model, ctx.bundle, ctx.family, ctx.seed, ctx.smoke, ctx.device, QAT)


@register_step
class Ptq(_Bits):
    """Post-training fake quantization, calibrated on the calibration images."""

    kind = "ptq"
    pattern, form = "ptq-" + _BITS, "ptq-wBaB"
    examples = ("ptq-w8a8", "ptq-w4a8", "ptq-w4a4")

    def apply(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return self._calibrated(parent, ctx)


@register_step
class Int8(Step):
    """Real int8 with torchao: ``dynamic`` (``quantize_``) or ``static`` (PT2E, calibrated)."""

    kind = "int8"
    pattern, form = r"(?P<mode>dynamic|static)-int8", "dynamic-int8, static-int8"
    examples = ("dynamic-int8", "static-int8")

    def apply(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        if self.args["mode"] == "dynamic":
            return Q.dynamic_int8(parent)
        return Q.static_int8(parent, calibration_images(ctx.bundle))


@register_step
class Half(Step):
    """A half-precision copy (inputs cast in, logits cast back to fp32)."""

    kind = "half"
    pattern, form = r"(?P<dtype>float16|bfloat16)", "float16, bfloat16"
    examples = ("float16",)

    def apply(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        return Q.HalfPrecision(parent, self.args["dtype"])
