"""Activation statistics: which layer inputs are hard to quantize, and why (outliers, heavy tails)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..modules import capture, of_type
from ..stats import Comparison
from .primitives import _EPS, quantization_error


@torch.no_grad()
def layer_inputs(model: nn.Module, x: torch.Tensor,
                 layer_types: tuple[type, ...] = (nn.Linear,)) -> dict[str, torch.Tensor]:
    """The input tensor of every layer of ``layer_types`` for one forward pass on ``x``."""
    if not any(isinstance(m, layer_types) for m in model.modules()):
        names = [t.__name__ for t in layer_types]
        raise ValueError(f"model ({type(model).__name__}) has no {names} layer: nothing to quantize")
    model.eval()
    with capture(model, of_type(*layer_types), kind="input") as seen:
        model(x)
    return dict(seen)


def outlier_stats(t: torch.Tensor) -> dict[str, float]:
    """Outlier statistics of a tensor: max |x|, std, max|x|/std, kurtosis (3 for a Gaussian) and the ratio of
    the largest to the median per-channel max |x| (channels = last dimension)."""
    x = t.detach().float()
    flat = x.flatten()
    std = flat.std().item()
    centered = flat - flat.mean()
    kurt = (centered.pow(4).mean() / centered.pow(2).mean().pow(2)).item()
    amax = flat.abs().max().item()
    per_channel = x.reshape(-1, x.shape[-1]).abs().amax(dim=0)
    return {"absmax": amax, "std": std, "max_over_std": amax / max(std, _EPS), "kurtosis": kurt,
            "channel_ratio": (per_channel.max() / per_channel.median().clamp(min=_EPS)).item()}


def activation_report(model: nn.Module, x: torch.Tensor, bits: Sequence[int] = (8, 4)) -> list[dict[str, Any]]:
    """One row per Linear: outlier statistics of its input and the SQNR (dB) of per-tensor asymmetric
    min/max quantization of that input at each bit width."""
    rows = []
    for name, act in layer_inputs(model, x).items():
        row: dict[str, Any] = {"layer": name, **outlier_stats(act)}
        for b in bits:
            row[f"sqnr_db_{b}bit"] = quantization_error(act, b)["sqnr_db"]
        rows.append(row)
    return rows


def norm_output_verdict(sqnr_gap_4bit: float, dyt: Mapping[str, float], layernorm: Mapping[str, float],
                        w4a4: Comparison, worst_input: str, rescued_accuracy: float) -> str:
    """Are DyT's bounded norm outputs easier to quantize than LayerNorm's? The answer from the 4-bit SQNR gap of the
    norm outputs (dB, DyT minus LayerNorm; more than 1 dB either way counts), their outlier statistics
    (``max_over_std``, ``kurtosis``) and the end-to-end W4A4 comparison of the two drops."""
    gap = sqnr_gap_4bit
    if gap > 1 and w4a4.significant and w4a4.diff < 0:
        return (f"Partly. DyT's bounded norm outputs ARE easier to quantize ({gap:+.1f} dB SQNR at 4 bits, max/std "
                f"{dyt['max_over_std']:.1f} vs {layernorm['max_over_std']:.1f}, kurtosis {dyt['kurtosis']:.1f} vs "
                f"{layernorm['kurtosis']:.1f}), yet W4A4 PTQ costs DyT more: the damage comes from an input no norm "
                f"bounds, {worst_input}. Keeping that one input at 8 bits brings DyT W4A4 to {rescued_accuracy:.1%}.")
    if gap > 1:
        return (f"Yes for the norm outputs ({gap:+.1f} dB SQNR at 4 bits, max/std {dyt['max_over_std']:.1f} vs "
                f"{layernorm['max_over_std']:.1f}); end to end the W4A4 difference is within noise on this run.")
    if gap < -1:
        return f"No: LayerNorm's outputs are easier to quantize here ({-gap:.1f} dB more SQNR at 4 bits)."
    return f"No clear difference: the 4-bit SQNR of the norm outputs differs by {gap:+.1f} dB."
