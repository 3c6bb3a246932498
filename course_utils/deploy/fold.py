"""Fold DyT's per-channel weight and bias into the Linear layers it feeds, before export (notebook 06, exercise 4).

``DyT(x) = g * tanh(alpha * x) + b``. Where its output feeds Linear layers only,

    W (g * t + b) + c = (W diag(g)) t + (W b + c),    t = tanh(alpha * x),

so the DyT keeps only ``tanh(alpha * x)`` (:class:`ScaledTanh`) and every Linear it feeds absorbs ``g`` (its
*columns* scaled) and ``b`` (through ``W``). The fold is exact up to float rounding and saves two parameters per
channel and two elementwise operators per DyT. ``alpha`` stays: it sits inside the ``tanh``, which is not linear.

In the course's pre-norm ViT (:class:`~course_utils.models.ViT`) that holds for every DyT: ``norm1`` feeds only the
attention's ``q``, ``k`` and ``v``, ``norm2`` only ``mlp.fc1``, and the final ``norm`` only ``head`` (through the
CLS token, a selection that commutes with anything per channel). A DyT before an activation (the ConvNet's, before
ReLU) does not fold. LayerNorm's affine folds the same way; its normalization, which divides each token by its own
standard deviation, does not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..models import Block, ViT
from ..modules import clone_model
from ..norms.dyt import DynamicTanh

#: ``fold_pair(dyt, linear) -> (tanh part, new linear)``: what :func:`fold_dyt` calls for every pair.
PairFold = Callable[[nn.Module, nn.Linear], tuple[nn.Module, nn.Linear]]


def plain_linear(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Linear`` with a plain float weight (not pruned, not quantized: torchao keeps the
    ``nn.Linear`` and swaps its weight for an int8 tensor subclass, which a fold must not multiply)."""
    return type(module) is nn.Linear and type(module.weight) is nn.Parameter and module.weight.is_floating_point()


class ScaledTanh(nn.Module):
    """``tanh(alpha * x)``: a DyT whose weight and bias were folded into the layers it feeds."""

    def __init__(self, alpha: torch.Tensor | float) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.as_tensor(alpha, dtype=torch.float32).detach().clone().reshape(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.alpha * x)


def fold_dyt_into_linear(dyt: DynamicTanh, linear: nn.Linear) -> tuple[ScaledTanh, nn.Linear]:
    """``(tanh part, new Linear)`` with ``new(tanh_part(x)) == linear(dyt(x))``: weight ``W * g`` (column j times
    ``g_j``, i.e. ``W diag(g)``), bias ``W b + c``. Neither input changes, so one DyT folds into several Linears."""
    if not isinstance(dyt, DynamicTanh) or not dyt.channels_last or len(dyt.normalized_shape) != 1:
        raise ValueError(f"dyt must be a channels-last DynamicTanh over one dimension; got {dyt!r}")
    if not plain_linear(linear) or linear.in_features != dyt.normalized_shape[0]:
        raise ValueError(f"linear must be a plain float nn.Linear taking the DyT's {dyt.normalized_shape[0]} "
                         f"channels (fold before pruning masks or quantization wrap it); got {linear!r}")
    with torch.no_grad():
        w, g, b = linear.weight.detach(), dyt.weight.detach(), dyt.bias.detach()
        new = nn.Linear(linear.in_features, linear.out_features, device=w.device, dtype=w.dtype)
        new.weight.copy_(w * g)  # broadcast over the rows: column j scaled by g_j
        new.bias.copy_(w @ b + (linear.bias.detach() if linear.bias is not None else 0.0))
    return ScaledTanh(dyt.alpha), new.train(linear.training)


def dyt_linear_pairs(model: nn.Module) -> dict[str, list[str]]:
    """``{DyT name: [the Linear layers it feeds]}`` for every DyT of a course ViT whose output reaches plain
    ``nn.Linear`` layers only (a quantized or otherwise wrapped Linear leaves its DyT unfolded)."""
    pairs: dict[str, list[str]] = {}
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, Block):
            pairs[f"{prefix}norm1"] = [f"{prefix}attn.{p}" for p in ("q", "k", "v")]
            pairs[f"{prefix}norm2"] = [f"{prefix}mlp.fc1"]
        elif isinstance(m, ViT):
            pairs[f"{prefix}norm"] = [f"{prefix}head"]
    return {n: lins for n, lins in pairs.items() if isinstance(model.get_submodule(n), DynamicTanh)
            and all(plain_linear(model.get_submodule(lin)) for lin in lins)}


def fold_dyt(model: nn.Module, fold_pair: PairFold = fold_dyt_into_linear) -> nn.Module:
    """A copy of ``model`` (pruning masks folded) in which ``fold_pair`` folded every DyT into the Linear layers it
    feeds (:func:`dyt_linear_pairs`): same logits, fewer parameters and operators. ``fold_pair`` is called once per
    (DyT, Linear) pair with the original DyT; the tanh part of its last call replaces the DyT. ``model`` is unchanged.
    """
    new = clone_model(model, fold=True).eval()
    pairs = dyt_linear_pairs(new)
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no DyT that feeds only plain float nn.Linear layers: fold_dyt "
                         "folds the course's ViT with DyT, before quantization (a DyT before an activation, as in the "
                         "ConvNet, cannot fold)")
    for norm_name, linear_names in pairs.items():
        dyt = new.get_submodule(norm_name)
        folded = [fold_pair(dyt, new.get_submodule(lin)) for lin in linear_names]
        for lin, (_, new_linear) in zip(linear_names, folded, strict=True):
            new.set_submodule(lin, new_linear)
        new.set_submodule(norm_name, folded[-1][0])
    return new
