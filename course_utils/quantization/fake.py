"""Whole-model fake quantization: simulate any bit width from 2 to 8 in floating point, for PTQ and QAT.

Every Linear/Conv2d is wrapped in a :class:`FakeQuantLayer` (symmetric per-channel weights, asymmetric
per-tensor inputs with a range recorded by :func:`calibrate`). The wrapped parameters stay fp32 and receive
straight-through gradients, so the same model serves a post-training sweep (change the bits, evaluate) and
quantization-aware training (``fit`` it). A pruned layer keeps its mask: the wrapper quantizes the effective
weight ``weight_orig * weight_mask``, so pruned-then-quantized models stay sparse during QAT.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..args import check_int
from ..modules import clone_model, find_modules, is_pruned, of_type, replace_modules
from .primitives import check_bits, fake_quantize, qparams_from_range

#: Layer types whose weights (and inputs) quantization handles.
QUANTIZABLE = (nn.Linear, nn.Conv2d)


class FakeQuantLayer(nn.Module):
    """A Linear/Conv2d whose weights (symmetric, per output channel) and optionally inputs (asymmetric,
    per tensor, range from calibration) are fake-quantized; ``weight_bits=None`` / ``act_bits=None`` keeps fp32.

    The wrapped layer's parameters stay fp32 and receive straight-through gradients, so the same model
    serves post-training sweeps (change the bits, evaluate) and quantization-aware training (``fit`` it).
    """

    def __init__(self, layer: nn.Module, weight_bits: int | None = 8, act_bits: int | None = None,
                 per_channel: bool = True) -> None:
        super().__init__()
        if not isinstance(layer, QUANTIZABLE):
            raise ValueError(f"layer must be one of {[t.__name__ for t in QUANTIZABLE]}, got {type(layer).__name__}")
        self.layer = layer
        self.per_channel = per_channel
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.calibrating = False
        self.register_buffer("act_min", torch.tensor(float("inf")))
        self.register_buffer("act_max", torch.tensor(float("-inf")))

    @property
    def weight_bits(self) -> int | None:
        return self._weight_bits

    @weight_bits.setter
    def weight_bits(self, bits: int | None) -> None:
        self._weight_bits = None if bits is None else check_bits(bits, "weight_bits")

    @property
    def act_bits(self) -> int | None:
        return self._act_bits

    @act_bits.setter
    def act_bits(self, bits: int | None) -> None:
        self._act_bits = None if bits is None else check_bits(bits, "act_bits")

    @property
    def calibrated(self) -> bool:
        return bool(torch.isfinite(self.act_min) and torch.isfinite(self.act_max))

    def quantized_weight(self) -> torch.Tensor:
        """The weight as the forward pass uses it (a pruned layer's mask applied, with gradient to weight_orig)."""
        w = self.layer.weight_orig * self.layer.weight_mask if is_pruned(self.layer) else self.layer.weight
        if self.weight_bits is None:
            return w
        return fake_quantize(w, self.weight_bits, symmetric=True, per_channel=self.per_channel, axis=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            lo, hi = torch.aminmax(x.detach())
            self.act_min = torch.minimum(self.act_min, lo)
            self.act_max = torch.maximum(self.act_max, hi)
        elif self.act_bits is not None:
            if not self.calibrated:
                raise RuntimeError("activation quantization needs a range: run calibrate(model, data) first")
            # torch's fused kernel: the same numbers and straight-through gradient as fake_quantize (tested), faster
            scale, zp = qparams_from_range(self.act_min, self.act_max, self.act_bits, symmetric=False)
            x = torch.fake_quantize_per_tensor_affine(x, scale.to(x.device), zp.to(x.device), 0, 2 ** self.act_bits - 1)
        w = self.quantized_weight()
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        return self.layer._conv_forward(x, w, self.layer.bias)

    def extra_repr(self) -> str:
        return f"weight_bits={self.weight_bits}, act_bits={self.act_bits}, per_channel={self.per_channel}"


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear/Conv2d of ``model`` by qualified name (the layers whose weights quantization compresses)."""
    return find_modules(model, of_type(*QUANTIZABLE))


def fake_quant_layers(model: nn.Module) -> dict[str, FakeQuantLayer]:
    """The ``FakeQuantLayer`` wrappers of a fake-quantized model, named like the original layers."""
    return find_modules(model, of_type(FakeQuantLayer))


def _nothing_to_quantize(model: nn.Module) -> ValueError:
    return ValueError(f"model ({type(model).__name__}) has no nn.Linear or nn.Conv2d layer: nothing to quantize")


def fake_quantize_model(model: nn.Module, weight_bits: int | None = 8, act_bits: int | None = None,
                        per_channel: bool = True, skip: Iterable[str] = (), inplace: bool = False) -> nn.Module:
    """Wrap every Linear/Conv2d (except the names in ``skip``) in a ``FakeQuantLayer``; a copy unless ``inplace``."""
    skip = set(skip)
    names = [n for n in quantizable_layers(model) if n not in skip]
    if not names:
        raise _nothing_to_quantize(model)
    unknown = skip - set(quantizable_layers(model))
    if unknown:
        raise ValueError(f"skip names {sorted(unknown)} are not Linear/Conv2d layers of the model")
    model = model if inplace else clone_model(model)
    wrap = lambda layer, fqn: FakeQuantLayer(layer, weight_bits, act_bits, per_channel)
    return replace_modules(model, wrap, lambda m, fqn: isinstance(m, QUANTIZABLE) and fqn not in skip)


def set_bits(model: nn.Module, weight_bits: int | None | Mapping[str, int | None] = 8,
             act_bits: int | None | Mapping[str, int | None] = None) -> nn.Module:
    """Set the bits of every ``FakeQuantLayer`` (an int/None for all, or a mapping layer name -> bits)."""
    layers = fake_quant_layers(model)
    if not layers:
        raise ValueError("model has no FakeQuantLayer; call fake_quantize_model first")
    for attr, value in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if isinstance(value, Mapping):
            unknown = set(value) - set(layers)
            if unknown:
                raise ValueError(f"{attr}: unknown layer names {sorted(unknown)}")
        for name, layer in layers.items():
            setattr(layer, attr, value.get(name, getattr(layer, attr)) if isinstance(value, Mapping) else value)
    return model


def _batches(data: DataLoader | torch.Tensor | Sequence[Any], num_batches: int | None) -> list[torch.Tensor]:
    """The input tensors of ``data`` (a loader, one tensor, or a list of batches), at most ``num_batches``."""
    if num_batches is not None:
        check_int("num_batches", num_batches, 1)
    if isinstance(data, torch.Tensor):
        data = [data]
    out = []
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if x.numel() == 0:
            continue
        out.append(x)
        if num_batches is not None and len(out) >= num_batches:
            break
    if not out:
        raise ValueError("calibration data is empty: pass a non-empty DataLoader, tensor or list of batches")
    return out


@torch.no_grad()
def calibrate(model: nn.Module, data: DataLoader | torch.Tensor | Sequence[Any],
              num_batches: int | None = None) -> nn.Module:
    """Record the input range of every ``FakeQuantLayer`` on ``data`` (fp32 forward passes); returns ``model``."""
    batches = _batches(data, num_batches)
    layers = fake_quant_layers(model)
    if not layers:
        raise ValueError("model has no FakeQuantLayer; call fake_quantize_model first")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    saved = {}
    for name, layer in layers.items():
        saved[name] = (layer.weight_bits, layer.act_bits)
        layer.weight_bits, layer.act_bits, layer.calibrating = None, None, True
        layer.act_min.fill_(float("inf"))
        layer.act_max.fill_(float("-inf"))
    try:
        for x in batches:
            model(x.to(device))
    finally:
        for name, layer in layers.items():
            layer.weight_bits, layer.act_bits = saved[name]
            layer.calibrating = False
        model.train(was_training)
    return model
