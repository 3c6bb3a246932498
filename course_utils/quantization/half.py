"""Half precision: fp16 and bf16 copies of a model. Exactly half the bytes, no calibration; faster only where
the hardware has half-precision matrix instructions."""

from __future__ import annotations

import torch
from torch import nn

from ..args import check_choice
from ..modules import clone_model

HALF_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class HalfPrecision(nn.Module):
    """A copy of ``model`` stored and run in float16/bfloat16; casts inputs in and logits back to float32."""

    def __init__(self, model: nn.Module, dtype: str = "float16") -> None:
        super().__init__()
        check_choice("dtype", dtype, HALF_DTYPES)
        self.dtype = HALF_DTYPES[dtype]
        self.model = clone_model(model, fold=True).to(self.dtype).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def pace(speedup: float) -> str:
    """A measured speed ratio to fp32 in words (within 5% counts as the same speed)."""
    word = "faster" if speedup > 1.05 else f"{1 / speedup:.1f}x slower" if speedup < 0.95 else "within 5%"
    return f"{speedup:.2f}x the fp32 speed ({word})"


def half_speed_reading(speedup_b1: float, speedup_large: float, matrix_speedup: float, batch: int, width: int,
                       dtype: str) -> str:
    """What the half-precision speedups say: faster at which batch sizes, and if at none, whether the CPU's
    half-precision matrix product (``matrix_speedup`` for a ``width``-wide product) would have allowed more."""
    fast1, fast = speedup_b1 > 1.05, speedup_large > 1.05
    if fast1 and fast:
        return "faster than fp32 at both batch sizes"
    if fast:
        return f"faster than fp32 only at batch {batch}, not at batch 1"
    if fast1:
        return f"faster than fp32 only at batch 1, not at batch {batch}"
    if matrix_speedup > 1.1:
        return (f"not faster than fp32, although a {width}-wide matrix product alone runs {matrix_speedup:.1f}x faster "
                f"in {dtype}: the small ViT spends much of its time in elementwise ops, which gain little")
    return f"not faster than fp32: even a {width}-wide product runs at {matrix_speedup:.2f}x in {dtype} on this CPU"
