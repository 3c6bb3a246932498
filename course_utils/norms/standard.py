"""The normalizations the course starts from: LayerNorm (ViT) and BatchNorm (ConvNet)."""

from __future__ import annotations

from torch import nn

from . import Normalization, register_norm

register_norm(Normalization("layernorm", "LayerNorm", "#ff7f0e", ("vit",),
                            lambda dim, channels_last, alpha_init: nn.LayerNorm(dim), (nn.LayerNorm,)))
register_norm(Normalization("batchnorm", "BatchNorm", "#2ca02c", ("cnn",),
                            lambda dim, channels_last, alpha_init: nn.BatchNorm2d(dim), (nn.BatchNorm2d,)))
