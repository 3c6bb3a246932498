"""Quantization from scratch: scale, zero point, quantize, dequantize, and fake quantization with a
straight-through gradient. This is the lesson; every function is tested number for number against PyTorch.

The conventions are PyTorch's (the observers of torchao's PT2E stack, ``torch.fake_quantize_per_tensor_affine``):
asymmetric quantization uses the unsigned range ``[0, 2^b - 1]``, symmetric quantization the restricted signed
range ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` with zero point 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

MIN_BITS, MAX_BITS = 2, 8
_EPS = torch.finfo(torch.float32).eps


def check_bits(bits: int, name: str = "bits") -> int:
    """Validate a bit width: an integer from 2 to 8."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{name}={bits!r} is not valid; choose an integer from {MIN_BITS} to {MAX_BITS}")
    return bits


def qrange(bits: int, symmetric: bool = False) -> tuple[int, int]:
    """Integer range: ``[0, 2^b - 1]`` (asymmetric) or ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (symmetric)."""
    check_bits(bits)
    if symmetric:
        q = 2 ** (bits - 1) - 1
        return -q, q
    return 0, 2 ** bits - 1


def _check_axis(x: torch.Tensor, axis: int) -> int:
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis} is not valid for a tensor with {x.ndim} dimensions")
    return axis % x.ndim


def _per_channel_minmax(x: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.aminmax(x.detach().movedim(axis, 0).reshape(x.shape[axis], -1), dim=1)


def qparams_from_range(min_val: torch.Tensor | float, max_val: torch.Tensor | float, bits: int = 8,
                       symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point that map ``[min_val, max_val]`` (widened to include 0) onto the integer grid.

    Asymmetric: ``scale = (max - min) / (qmax - qmin)``, ``zero_point = qmin - round(min / scale)``.
    Symmetric: ``scale = max(|min|, |max|) / ((qmax - qmin) / 2)``, ``zero_point = 0``.
    """
    qmin, qmax = qrange(bits, symmetric)
    min_val = torch.as_tensor(min_val, dtype=torch.float32)
    max_val = torch.as_tensor(max_val, dtype=torch.float32)
    if torch.any(min_val > max_val):
        raise ValueError("min_val must be <= max_val")
    min_neg = torch.clamp(min_val, max=0.0)
    max_pos = torch.clamp(max_val, min=0.0)
    if symmetric:
        amax = torch.maximum(-min_neg, max_pos)
        scale = torch.clamp(amax / ((qmax - qmin) / 2), min=_EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = torch.clamp((max_pos - min_neg) / (qmax - qmin), min=_EPS)
        zero_point = torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax).to(torch.int32)
    return scale, zero_point


def scale_zero_point(x: torch.Tensor, bits: int = 8, symmetric: bool = False, per_channel: bool = False,
                     axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of ``x`` from its min/max: one pair (0-d tensors) or one per channel of ``axis``."""
    if x.numel() == 0:
        raise ValueError("x is empty: there is no range to quantize")
    if per_channel:
        lo, hi = _per_channel_minmax(x, _check_axis(x, axis))
    else:
        lo, hi = torch.aminmax(x.detach())
    return qparams_from_range(lo, hi, bits, symmetric)


def _broadcast(t: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Reshape a per-channel vector so it broadcasts along ``axis`` of ``x`` (0-d tensors pass through)."""
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        return t
    if t.numel() != x.shape[axis]:
        raise ValueError(f"{t.numel()} quantization parameters do not match {x.shape[axis]} channels on axis {axis}")
    shape = [1] * x.ndim
    shape[axis] = -1
    return t.reshape(shape)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int = 8,
             symmetric: bool = False, axis: int = 0) -> torch.Tensor:
    """Integers ``q = clamp(round(x / scale) + zero_point, qmin, qmax)`` (int32; per channel along ``axis``)."""
    qmin, qmax = qrange(bits, symmetric)
    axis = _check_axis(x, axis) if x.ndim else 0
    s, z = _broadcast(scale, x, axis), _broadcast(zero_point, x, axis)
    return torch.clamp(torch.round(x / s) + z, qmin, qmax).to(torch.int32)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Real values ``(q - zero_point) * scale`` (per channel along ``axis`` when scale is a vector)."""
    axis = _check_axis(q, axis) if q.ndim else 0
    s, z = _broadcast(scale, q, axis), _broadcast(zero_point, q, axis)
    return (q.float() - z) * s


class FakeQuantizeSTE(torch.autograd.Function):
    """Quantize-then-dequantize in the forward pass; the backward pass is the clipped straight-through
    estimator: gradient 1 where ``round(x / scale) + zero_point`` falls inside ``[qmin, qmax]``, else 0
    (the same rule as ``torch.fake_quantize_per_tensor_affine``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                qmin: int, qmax: int) -> torch.Tensor:
        q = torch.round(x / scale) + zero_point
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return (torch.clamp(q, qmin, qmax) - zero_point) * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None


def fake_quantize(x: torch.Tensor, bits: int = 8, symmetric: bool = False, per_channel: bool = False,
                  axis: int = 0, scale: torch.Tensor | None = None,
                  zero_point: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize and dequantize ``x`` at ``bits`` (2..8), differentiable with the straight-through estimator.

    Without ``scale``/``zero_point`` they come from the min/max of ``x`` (per channel of ``axis`` if asked).
    """
    qmin, qmax = qrange(bits, symmetric)
    if scale is None or zero_point is None:
        scale, zero_point = scale_zero_point(x, bits, symmetric, per_channel, axis)
    axis = _check_axis(x, axis) if x.ndim else 0
    s = _broadcast(scale, x, axis).to(x.dtype).detach()
    z = _broadcast(zero_point, x, axis).to(x.dtype).detach()
    if torch.is_grad_enabled() and x.requires_grad:
        return FakeQuantizeSTE.apply(x, s, z, qmin, qmax)
    return (torch.clamp(torch.round(x / s) + z, qmin, qmax) - z) * s  # inference: no gradient mask needed


def quantization_error(x: torch.Tensor, bits: int = 8, symmetric: bool = False, per_channel: bool = False,
                       axis: int = 0) -> dict[str, float]:
    """Mean squared rounding error of fake-quantizing ``x`` and the signal-to-quantization-noise ratio in dB."""
    x = x.detach().float()
    err = fake_quantize(x, bits, symmetric, per_channel, axis) - x
    mse = err.pow(2).mean().item()
    power = x.pow(2).mean().item()
    sqnr = 10 * math.log10(power / mse) if mse > 0 else float("inf")
    return {"mse": mse, "sqnr_db": sqnr}
