"""Mixed precision: spend a bit budget unevenly, giving more bits to the layers whose rounding hurts most."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fake import FakeQuantLayer, fake_quant_layers, quantizable_layers, set_bits
from .primitives import check_bits


@torch.no_grad()
def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        total += F.cross_entropy(model(x[i:i + batch_size]).float(), y[i:i + batch_size], reduction="sum").item()
    return total / len(x)


def layer_sensitivity(qmodel: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      bits: Sequence[int] = (2, 3, 4)) -> dict[str, dict[int, float]]:
    """Loss increase on ``(x, y)`` when ONE layer's weights are fake-quantized to each of ``bits`` and every
    other layer stays fp32 (activations fp32). ``qmodel`` comes from ``fake_quantize_model``; its bits are
    restored afterwards."""
    layers = fake_quant_layers(qmodel)
    if not layers:
        raise ValueError("qmodel has no FakeQuantLayer; call fake_quantize_model first")
    for b in bits:
        check_bits(b)
    saved = {n: (m.weight_bits, m.act_bits) for n, m in layers.items()}
    out: dict[str, dict[int, float]] = {}
    try:
        set_bits(qmodel, None, None)
        base = _loss(qmodel, x, y)
        for name, layer in layers.items():
            out[name] = {}
            for b in bits:
                layer.weight_bits = b
                out[name][b] = _loss(qmodel, x, y) - base
            layer.weight_bits = None
    finally:
        for n, m in layers.items():
            m.weight_bits, m.act_bits = saved[n]
    return out


def average_bits(assignment: Mapping[str, int], sizes: Mapping[str, int]) -> float:
    """Parameter-weighted mean bit width of a per-layer assignment."""
    total = sum(sizes[n] for n in assignment)
    return sum(assignment[n] * sizes[n] for n in assignment) / total


def greedy_bit_allocation(sensitivity: Mapping[str, Mapping[int, float]], sizes: Mapping[str, int],
                          budget: float, max_bits: int = 8) -> dict[str, int]:
    """Per-layer weight bits with a parameter-weighted average <= ``budget``.

    Start every layer at ``max_bits``; repeatedly lower, by one step of the measured bit widths, the layer
    whose next step costs the least loss increase per bit saved (``sensitivity[layer][bits]``, the cost at
    ``max_bits`` taken as 0), until the budget is met.
    """
    check_bits(max_bits, "max_bits")
    if not sensitivity:
        raise ValueError("sensitivity is empty")
    choices = sorted({b for s in sensitivity.values() for b in s} | {max_bits}, reverse=True)
    lowest = choices[-1]
    if not lowest <= budget <= max_bits:
        raise ValueError(f"budget={budget!r} is not valid; it must lie between {lowest} and {max_bits} bits")
    assign = {n: max_bits for n in sensitivity}
    cost = {n: {max_bits: 0.0, **{int(b): float(v) for b, v in s.items()}} for n, s in sensitivity.items()}
    while average_bits(assign, sizes) > budget + 1e-9:
        best, best_score = None, math.inf
        for n, b in assign.items():
            lower = [c for c in choices if c < b and c in cost[n]]
            if not lower:
                continue
            nb = lower[0]
            score = (cost[n][nb] - cost[n][b]) / (sizes[n] * (b - nb))
            if score < best_score:
                best, best_score = (n, nb), score
        if best is None:
            break
        assign[best[0]] = best[1]
    return assign


def weight_sizes(model: nn.Module) -> dict[str, int]:
    """Number of weights of every Linear/Conv2d (or FakeQuantLayer) by name."""
    layers: dict[str, Any] = fake_quant_layers(model) or quantizable_layers(model)
    return {n: (m.layer.weight if isinstance(m, FakeQuantLayer) else m.weight).numel() for n, m in layers.items()}


def describe_assignment(assignment: Mapping[str, int]) -> str:
    """Compact text of a per-layer assignment, grouping the layer kinds (``q=4,4,3,4 fc1=...``)."""
    groups: dict[str, list[str]] = {}
    for name, b in assignment.items():
        kind = re.sub(r"^blocks\.\d+\.(attn\.|mlp\.)?", "", name)
        groups.setdefault(kind, []).append(str(b))
    return " ".join(f"{k}={','.join(v)}" for k, v in groups.items())
