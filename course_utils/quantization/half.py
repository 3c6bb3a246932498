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
