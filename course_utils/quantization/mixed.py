"""Mixed precision: spend a bit budget unevenly, giving more bits to the layers whose rounding hurts most."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..args import check_int
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
                          budget: float, max_bits: int = 8,
                          measure: Callable[[Mapping[str, int]], float] | None = None,
                          shortlist: int = 4) -> dict[str, int]:
    """Per-layer weight bits with a parameter-weighted average <= ``budget`` (see :func:`greedy_bit_path`)."""
    return greedy_bit_path(sensitivity, sizes, [budget], max_bits, measure, shortlist)[budget]


def greedy_bit_path(sensitivity: Mapping[str, Mapping[int, float]], sizes: Mapping[str, int],
                    budgets: Sequence[float], max_bits: int = 8,
                    measure: Callable[[Mapping[str, int]], float] | None = None,
                    shortlist: int = 4) -> dict[float, dict[str, int]]:
    """Per-layer weight bits for each of ``budgets`` (parameter-weighted average bits), from one greedy descent.

    Start every layer at ``max_bits``; repeatedly lower one layer by one step of the measured bit widths, the
    one whose step costs the least loss increase per bit saved, and record the assignment each time the average
    first falls to a budget (a lower budget continues the same descent, so one pass serves every budget).

    Without ``measure`` the cost of a step is read from ``sensitivity`` (one layer quantized alone, the cost at
    ``max_bits`` taken as 0): cheap, but it assumes the layers' errors add up, which fails at 2-3 bits where
    the errors compound. With ``measure`` (a function returning the calibration loss of a whole assignment), the
    ``shortlist`` cheapest steps by that estimate are each measured on the current assignment and the best
    measured one is taken: the greedy then sees how the layers interact.
    """
    check_bits(max_bits, "max_bits")
    if not sensitivity:
        raise ValueError("sensitivity is empty")
    check_int("shortlist", shortlist, minimum=1)
    choices = sorted({b for s in sensitivity.values() for b in s} | {max_bits}, reverse=True)
    lowest = choices[-1]
    for budget in budgets:
        if not lowest <= budget <= max_bits:
            raise ValueError(f"budget={budget!r} is not valid; it must lie between {lowest} and {max_bits} bits")
    assign = {n: max_bits for n in sensitivity}
    cost = {n: {max_bits: 0.0, **{int(b): float(v) for b, v in s.items()}} for n, s in sensitivity.items()}
    current = measure(assign) if measure is not None else 0.0
    todo, found = sorted(set(budgets), reverse=True), {}
    while todo:
        while todo and average_bits(assign, sizes) <= todo[0] + 1e-9:
            found[todo.pop(0)] = dict(assign)
        if not todo:
            break
        steps = []
        for n, b in assign.items():
            lower = [c for c in choices if c < b and c in cost[n]]
            if lower:
                saved = sizes[n] * (b - lower[0])
                steps.append(((cost[n][lower[0]] - cost[n][b]) / saved, n, lower[0], saved))
        if not steps:
            found.update({b: dict(assign) for b in todo})
            break
        steps.sort()
        if measure is None:
            _, name, bits, _ = steps[0]
        else:
            scored = []
            for _, n, b, saved in steps[:shortlist]:
                loss = measure({**assign, n: b})
                scored.append(((loss - current) / saved, n, b, loss))
            _, name, bits, current = min(scored)
        assign[name] = bits
    return {b: found[b] for b in budgets}


def assignment_loss(qmodel: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[Mapping[str, int]], float]:
    """``measure`` for :func:`greedy_bit_path`: the loss on ``(x, y)`` with an assignment of weight bits
    (activations fp32). It changes the bits of ``qmodel``; set them again before using the model."""
    if not fake_quant_layers(qmodel):
        raise ValueError("qmodel has no FakeQuantLayer; call fake_quantize_model first")

    def measure(assignment: Mapping[str, int]) -> float:
        set_bits(qmodel, dict(assignment), None)
        return _loss(qmodel, x, y)

    return measure


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
