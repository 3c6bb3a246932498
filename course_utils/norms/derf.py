"""Dynamic erf (Derf): DyT's successor, added as one module to show the normalization registry.

Chen, Lu, Zhu, Sun & Liu, "Stronger Normalization-Free Transformers" (arXiv 2512.10938) search point-wise functions
for the one that replaces normalization best and report ``erf(alpha * x + s)`` ahead of LayerNorm and DyT on ViT
(ImageNet top-1, ViT-B: LayerNorm 82.3, DyT 82.5, Derf 82.8). Like DyT, ``alpha`` is one learnable scalar per layer
(initial 0.5); Derf adds a learnable scalar shift ``s`` (initial 0) inside the function, and keeps DyT's per-channel
``weight``/``bias`` outside it. Its output is bounded by ``bias +/- |weight|`` too.
"""

from __future__ import annotations

import torch
from torch import nn

from . import Normalization, register_norm


class DynamicErf(nn.Module):
    """Derf: ``weight * erf(alpha * x + shift) + bias`` over the last dimension (ViT tokens)."""

    def __init__(self, dim: int, alpha_init_value: float = 0.5, shift_init_value: float = 0.0) -> None:
        super().__init__()
        self.normalized_shape = (int(dim),)
        self.alpha_init_value = alpha_init_value
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init_value)))
        self.shift = nn.Parameter(torch.full((1,), float(shift_init_value)))
        self.weight = nn.Parameter(torch.ones(self.normalized_shape))
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(self.alpha * x + self.shift) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"normalized_shape={self.normalized_shape}, alpha_init_value={self.alpha_init_value}"


register_norm(Normalization("derf", "Derf", "#d62728", ("vit",),
                            lambda dim, channels_last, alpha_init: DynamicErf(dim, alpha_init), (DynamicErf,)))
