"""Dynamic Tanh, the course's subject (Zhu, Chen, He, LeCun & Liu, "Transformers without Normalization", CVPR 2025).

``DyT(x) = weight * tanh(alpha * x) + bias`` with one learnable scalar ``alpha`` per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import Normalization, register_norm


class DynamicTanh(nn.Module):
    """DyT: ``weight * tanh(alpha * x) + bias``, a drop-in replacement for LayerNorm/BatchNorm.

    ``alpha`` is one learnable scalar; ``weight``/``bias`` have shape ``normalized_shape``.
    With ``channels_last=False`` the input is NCHW and weight/bias broadcast over H and W.
    """

    def __init__(self, normalized_shape: int | Sequence[int], channels_last: bool = True,
                 alpha_init_value: float = 0.5) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.channels_last = channels_last
        self.alpha_init_value = alpha_init_value
        self.alpha = nn.Parameter(torch.ones(1) * alpha_init_value)
        self.weight = nn.Parameter(torch.ones(self.normalized_shape))
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.alpha * x)
        if self.channels_last:
            return x * self.weight + self.bias
        return x * self.weight[:, None, None] + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return (f"normalized_shape={self.normalized_shape}, alpha_init_value={self.alpha_init_value}, "
                f"channels_last={self.channels_last}")


register_norm(Normalization("dyt", "DyT", "#1f77b4", ("vit", "cnn"),
                            lambda dim, channels_last, alpha_init: DynamicTanh(dim, channels_last, alpha_init),
                            (DynamicTanh,)))
