"""No normalization at all: the control that shows what a norm layer (or DyT) is for."""

from __future__ import annotations

from torch import nn

from . import Normalization, register_norm

register_norm(Normalization("identity", "none", "#7f7f7f", ("vit", "cnn"),
                            lambda dim, channels_last, alpha_init: nn.Identity()))
