"""Inside an int8 kernel: a calibration observer and a Linear layer computed in integers only.

- :func:`observe_range`: the range a calibration observer records over batches: the running min and max (what
  torchao's ``MinMaxObserver`` keeps) or percentiles of every value seen (clips the rarest outliers).
- :func:`int_linear`: ``int8 x int8`` products summed in int32, the bias quantized to int32 with scale
  ``x_scale * w_scale``, then one multiplication by ``x_scale * w_scale / out_scale`` and rounding (ties to even) back
  to 8 bits (Jacob et al., CVPR 2018). :func:`onednn_int_linear` is PyTorch's own kernel for the same layer, the one
  ``torch.compile`` runs for a PT2E int8 model on x86 CPUs; the tests compare the two to the last integer.
- :class:`IntegerLinear` / :func:`integer_linear_model`: every ``nn.Linear`` of a model replaced by that integer
  layer (weights int8 per output channel, input and output uint8 per tensor from calibration), so a whole ViT runs
  its matrix products in integers with whichever ``int_linear`` (the course's, a student's, oneDNN's) is given.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..args import check_choice, check_int, check_number
from ..modules import FilterFn, capture, clone_model, of_type, replace_modules
from .fake import _batches
from .primitives import dequantize, qparams_from_range, quantize

OBSERVER_METHODS = ("minmax", "percentile")
#: ``int_linear(q_x, x_scale, x_zp, q_w, w_scale, b, out_scale, out_zp) -> q_out``
IntLinearFn = Callable[..., torch.Tensor]
#: ``observer(batches) -> (lo, hi)``
ObserverFn = Callable[..., tuple[float, float]]


def observe_range(batches: Iterable[torch.Tensor], method: str = "minmax", q: float = 99.9) -> tuple[float, float]:
    """The ``(lo, hi)`` an observer records over calibration ``batches`` (seen once, in order).

    ``"minmax"``: the running min and max, as torchao's ``MinMaxObserver`` keeps them (not yet widened to contain 0:
    that is the scale and zero point's job). ``"percentile"``: the ``(100 - q)``-th and ``q``-th percentiles of all
    values seen, both tails, interpolated linearly as ``numpy.percentile`` does; it ignores the rarest outliers, so a
    grid spends its levels on the values that do occur.
    """
    check_choice("method", method, OBSERVER_METHODS)
    check_number("q", q, 50.0, 100.0)
    lo, hi, seen = math.inf, -math.inf, []
    for x in batches:
        x = torch.as_tensor(x).detach().float()
        if x.numel() == 0:
            continue
        if method == "minmax":
            lo, hi = min(lo, x.min().item()), max(hi, x.max().item())
        else:
            seen.append(x.flatten().double().cpu().numpy())
    if method == "percentile" and seen:
        lo, hi = (float(v) for v in np.percentile(np.concatenate(seen), [100.0 - q, q]))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("batches hold no values: there is no range to observe")
    return lo, hi


def _check_int_linear_args(q_x: torch.Tensor, q_w: torch.Tensor, w_scale: torch.Tensor,
                           b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    if q_x.dtype not in (torch.uint8, torch.int8):
        raise ValueError(f"q_x must be uint8 or int8, got {q_x.dtype}")
    if q_w.dtype != torch.int8 or q_w.ndim != 2:
        raise ValueError(f"q_w must be a 2-D int8 tensor (out_features, in_features), got {q_w.dtype} {q_w.ndim}-D")
    if q_x.shape[-1] != q_w.shape[1]:
        raise ValueError(f"q_x has {q_x.shape[-1]} features, q_w expects {q_w.shape[1]}")
    w_scale = torch.as_tensor(w_scale, dtype=torch.float32).reshape(-1)
    if w_scale.numel() not in (1, q_w.shape[0]) or not bool((w_scale > 0).all()):
        raise ValueError(f"w_scale must hold one positive scale or one per output channel ({q_w.shape[0]})")
    if b is not None and b.numel() != q_w.shape[0]:
        raise ValueError(f"b has {b.numel()} values for {q_w.shape[0]} output channels")
    return w_scale, None if b is None else b.detach().float().reshape(-1)


def int_linear(q_x: torch.Tensor, x_scale: float, x_zp: int, q_w: torch.Tensor, w_scale: torch.Tensor,
               b: torch.Tensor | None, out_scale: float, out_zp: int) -> torch.Tensor:
    """A quantized Linear in integer arithmetic: ``q_x`` (uint8 or int8, per tensor: ``x_scale``, ``x_zp``) times
    ``q_w`` (int8, symmetric, one scale per output channel in ``w_scale``), summed in int32; the bias enters as
    ``round(b / (x_scale * w_scale))`` in int32; the sum is multiplied by ``x_scale * w_scale / out_scale``, rounded
    (ties to even, ``torch.round``), shifted by ``out_zp`` and clamped to ``q_x``'s 8-bit range.

    Why: this is what an int8 kernel computes, and the integers every later layer receives. Rounding then adding
    ``out_zp`` is PyTorch's quantize (``quantize_affine``); oneDNN adds ``out_zp`` before rounding, which gives the
    same integer unless the value is an exact tie and ``out_zp`` is odd.
    """
    w_scale, b = _check_int_linear_args(q_x, q_w, w_scale, b)
    acc = torch.matmul(q_x.to(torch.int32) - int(x_zp), q_w.to(torch.int32).T)  # int32: 8-bit sums would overflow
    bias_scale = float(x_scale) * w_scale  # the scale of one unit of the accumulator, per output channel
    if b is not None:
        acc = acc + torch.round(b / bias_scale).to(torch.int32)
    info = torch.iinfo(q_x.dtype)
    q = torch.round(acc * (bias_scale / float(out_scale))) + int(out_zp)
    return torch.clamp(q, info.min, info.max).to(q_x.dtype)


def onednn_int_linear(q_x: torch.Tensor, x_scale: float, x_zp: int, q_w: torch.Tensor, w_scale: torch.Tensor,
                      b: torch.Tensor | None, out_scale: float, out_zp: int) -> torch.Tensor:
    """The same layer computed by PyTorch's int8 kernel, oneDNN's ``qlinear_pointwise`` (the op ``torch.compile``
    lowers a PT2E ``dequantize -> linear -> quantize`` to on x86 CPUs). Same arguments as :func:`int_linear`.

    oneDNN adds the bias in fp32 after scaling the int32 accumulator (not as int32) and adds ``out_zp`` before
    rounding (ties to even); with a bias on the int32 grid the two agree to the last integer except where float32
    rounding moves a value across a tie, or an exact tie meets an odd ``out_zp``. On CPUs without VNNI instructions
    oneDNN adds pairs of uint8 x int8 products in int16, which saturates unless the weights stay within +/-64 (or the
    activations within 7 bits, the ``reduce_range`` of PyTorch's x86 quantizer).
    """
    w_scale, b = _check_int_linear_args(q_x, q_w, w_scale, b)
    x2 = q_x.reshape(-1, q_x.shape[-1]).contiguous()
    n_out = q_w.shape[0]
    packed = torch.ops.onednn.qlinear_prepack(q_w.contiguous(), list(x2.shape))
    out = torch.ops.onednn.qlinear_pointwise(
        x2, float(x_scale), int(x_zp), packed, w_scale.expand(n_out).contiguous(),
        torch.zeros(n_out, dtype=torch.int32), b, float(out_scale), int(out_zp), q_x.dtype, "none", [], "")
    return out.reshape(*q_x.shape[:-1], n_out)


class IntegerLinear(nn.Module):
    """An ``nn.Linear`` run as an int8 kernel runs it: the input quantized to uint8 (per tensor, ``input_range``),
    the weight to int8 (symmetric, restricted range, per output channel), the product by ``int_linear``, the uint8
    output (per tensor, ``output_range``) dequantized for the fp32 ops that follow (norms, softmax, GELU, residual
    adds)."""

    def __init__(self, linear: nn.Linear, input_range: tuple[float, float], output_range: tuple[float, float],
                 int_linear: IntLinearFn = int_linear) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach().float().cpu()
        w_scale, w_zp = qparams_from_range(w.amin(dim=1), w.amax(dim=1), 8, symmetric=True)
        self.register_buffer("q_w", quantize(w, w_scale, w_zp, 8, symmetric=True, axis=0).to(torch.int8))
        self.register_buffer("w_scale", w_scale)
        bias = linear.bias.detach().float().cpu().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        x_scale, x_zp = qparams_from_range(*input_range, 8)
        out_scale, out_zp = qparams_from_range(*output_range, 8)
        self.x_scale, self.x_zp = float(x_scale), int(x_zp)
        self.out_scale, self.out_zp = float(out_scale), int(out_zp)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.int_linear = int_linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q_x = quantize(x, torch.tensor(self.x_scale), torch.tensor(self.x_zp), 8).to(torch.uint8)
        q = self.int_linear(q_x, self.x_scale, self.x_zp, self.q_w, self.w_scale, self.bias, self.out_scale,
                            self.out_zp)
        return dequantize(q, torch.tensor(self.out_scale), torch.tensor(self.out_zp))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, x_scale={self.x_scale:.4g}, "
                f"x_zp={self.x_zp}, out_scale={self.out_scale:.4g}, out_zp={self.out_zp}")


def _split(calibration: DataLoader | torch.Tensor | Sequence[Any], batch_size: int) -> list[torch.Tensor]:
    check_int("batch_size", batch_size, 1)
    return [part for x in _batches(calibration, None) for part in x.split(batch_size)]


@torch.no_grad()
def layer_ranges(model: nn.Module, calibration: DataLoader | torch.Tensor | Sequence[Any],
                 layers: FilterFn | Iterable[str], kind: str = "output", observer: ObserverFn = observe_range,
                 batch_size: int = 64) -> dict[str, tuple[float, float]]:
    """The ``(lo, hi)`` of what each chosen layer receives (``kind="input"``) or returns (``"output"``) on the
    calibration images, by ``observer`` fed one tensor per batch of ``batch_size``: the ranges static quantization
    fixes. ``model`` runs in fp32, in eval mode."""
    seen: dict[str, list[torch.Tensor]] = defaultdict(list)
    model.eval()
    device = next(model.parameters()).device
    for x in _split(calibration, batch_size):
        with capture(model, layers, kind) as got:
            model(x.to(device))
        for name, t in got.items():
            seen[name].append(t.cpu())
    if not seen:
        raise ValueError(f"no chosen layer of {type(model).__name__} ran on the calibration data")
    return {name: observer(ts) for name, ts in seen.items()}


def integer_linear_model(model: nn.Module, calibration: DataLoader | torch.Tensor | Sequence[Any],
                         int_linear: IntLinearFn = int_linear, observer: ObserverFn = observe_range,
                         batch_size: int = 64) -> nn.Module:
    """A CPU copy of ``model`` whose every ``nn.Linear`` is an :class:`IntegerLinear` running ``int_linear``, its
    input and output ranges observed (``observer``) on ``calibration`` in the fp32 model: static int8 PTQ with the
    matrix products in integers. Everything else (patch embedding, norms, attention) stays fp32."""
    m = clone_model(model, fold=True).cpu().eval()
    linear = of_type(nn.Linear)
    if not any(isinstance(mod, nn.Linear) for mod in m.modules()):
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer: nothing to quantize")
    inputs = layer_ranges(m, calibration, linear, "input", observer, batch_size)
    outputs = layer_ranges(m, calibration, linear, "output", observer, batch_size)
    missing = [n for n, mod in m.named_modules() if isinstance(mod, nn.Linear) and n not in inputs]
    if missing:
        raise ValueError(f"Linear layers {missing} did not run on the calibration data: no range to quantize them")
    return replace_modules(m, lambda mod, fqn: IntegerLinear(mod, inputs[fqn], outputs[fqn], int_linear),
                           linear).eval()
