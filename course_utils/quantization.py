"""Quantization: from-scratch fake quantization with a straight-through estimator, whole-model fake
quantization for PTQ sweeps and QAT, PyTorch's real int8 models (dynamic, static, QAT), half precision,
activation outlier statistics and a greedy mixed-precision bit assignment.

The from-scratch functions follow PyTorch's conventions (``torch.ao.quantization`` observers and
``torch.fake_quantize_per_tensor_affine``) so the unit tests can compare them number for number:
asymmetric quantization uses the unsigned range ``[0, 2^b - 1]``, symmetric quantization the restricted
signed range ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` with zero point 0.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

MIN_BITS, MAX_BITS = 2, 8
#: Layer types whose weights (and inputs) the from-scratch model quantization handles.
QUANTIZABLE = (nn.Linear, nn.Conv2d)
OBSERVERS = ("minmax", "histogram")
BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")
HALF_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_EPS = torch.finfo(torch.float32).eps

# ----------------------------------------------------------------------------------------------- warnings

#: Messages of the deprecation warnings that torch.ao.quantization (eager mode) repeats on every call.
_NOISY = (r"torch\.ao\.quantization is deprecated", r"Please use quant_min and quant_max",
          r"torch\.quantize_per_tensor, torch\.quantize_per_channel", r".*quantized tensor creation",
          r".*_aminmax is deprecated", r".*is deprecated and will be removed.*quantiz")
_NOTE = ("Note: torch.ao.quantization (eager mode) is deprecated in favour of torchao, whose int8 models are "
         "faster than fp32 on CPU only under torch.compile; the eager-mode API still runs real int8 kernels, "
         "so this course uses it and silences its repeated deprecation warnings.")
_note_shown = False


def silence_quantization_warnings() -> None:
    """Ignore (process-wide) only the repeated deprecation warnings of ``torch.ao.quantization``."""
    for pattern in _NOISY:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def _torch_ao() -> Iterator[None]:
    """Run ``torch.ao.quantization`` calls quietly; print one explanatory note per process."""
    global _note_shown
    silence_quantization_warnings()
    if not _note_shown:
        print(_NOTE)
        _note_shown = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for pattern in _NOISY:
            warnings.filterwarnings("ignore", message=pattern)
        yield


silence_quantization_warnings()

# ----------------------------------------------------------------------------------------------- from scratch


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


# ----------------------------------------------------------------------------------------------- whole models

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
        """The weight as the forward pass uses it."""
        w = self.layer.weight
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
    return {n: m for n, m in model.named_modules() if isinstance(m, QUANTIZABLE)}


def fake_quant_layers(model: nn.Module) -> dict[str, FakeQuantLayer]:
    """The ``FakeQuantLayer`` wrappers of a fake-quantized model, named like the original layers."""
    return {n: m for n, m in model.named_modules() if isinstance(m, FakeQuantLayer)}


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
    model = model if inplace else copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, FakeQuantLayer(getattr(parent, child), weight_bits, act_bits, per_channel))
    return model


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


# ----------------------------------------------------------------------------------------------- activations

@torch.no_grad()
def layer_inputs(model: nn.Module, x: torch.Tensor,
                 layer_types: tuple[type, ...] = (nn.Linear,)) -> dict[str, torch.Tensor]:
    """The input tensor of every layer of ``layer_types`` for one forward pass on ``x`` (forward pre-hooks)."""
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, layer_types):
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: captured.__setitem__(name, args[0].detach().clone())))
    if not handles:
        raise _nothing_to_quantize(model)
    model.eval()
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return captured


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


# ----------------------------------------------------------------------------------------------- real int8

def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not valid; choose one of {list(BACKENDS)}")
    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(f"backend={backend!r} is not supported by this torch build "
                         f"(supported: {torch.backends.quantized.supported_engines})")
    return backend


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 (``torch.ao.quantization.quantize_dynamic``): int8 Linear weights, activations quantized
    on the fly per batch. Returns a quantized copy (CPU)."""
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer: nothing to quantize")
    with _torch_ao():
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


class QuantWrapper(nn.Module):
    """``QuantStub -> module -> DeQuantStub``: float in, float out, int8 inside once converted."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.module = module
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.module(self.quant(x)))


def static_qconfig(observer: str = "histogram", per_channel: bool = True, backend: str = "x86",
                   qat: bool = False, weight_bits: int = 8) -> Any:
    """A ``QConfig``: activation observer ``"minmax"`` or ``"histogram"`` (quint8, 7-bit range on x86/fbgemm
    as PyTorch's defaults do), symmetric weights per output channel or per tensor in the range of ``weight_bits``
    (stored in int8, so 4-bit weights run in the int8 kernels); ``qat`` gives fake-quantize modules with
    moving-average observers for quantization-aware training."""
    from torch.ao.quantization import (
        FakeQuantize,
        HistogramObserver,
        MinMaxObserver,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
    )

    if observer not in OBSERVERS:
        raise ValueError(f"observer={observer!r} is not valid; choose one of {list(OBSERVERS)}")
    _check_backend(backend)
    check_bits(weight_bits, "weight_bits")
    reduce = backend in ("x86", "fbgemm")
    a_min, a_max = (0, 127) if reduce else (0, 255)
    w_min, w_max = qrange(weight_bits, symmetric=True)
    w_scheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    if qat:
        w_obs = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
        act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=a_min, quant_max=a_max,
                                     dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        weight = FakeQuantize.with_args(observer=w_obs, quant_min=w_min, quant_max=w_max, dtype=torch.qint8,
                                        qscheme=w_scheme)
        return QConfig(activation=act, weight=weight)
    act_obs = HistogramObserver if observer == "histogram" else MinMaxObserver
    act = act_obs.with_args(quant_min=a_min, quant_max=a_max, dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    w_obs = PerChannelMinMaxObserver if per_channel else MinMaxObserver
    weight = w_obs.with_args(dtype=torch.qint8, qscheme=w_scheme, quant_min=w_min, quant_max=w_max)
    return QConfig(activation=act, weight=weight)


def _fuse_convnet(model: nn.Module, qat: bool = False) -> None:
    """Fuse ``conv -> BatchNorm -> ReLU`` (or ``conv -> ReLU``) in every block that has them, in place
    (BatchNorm folded into the conv for inference; kept as a fused training module for QAT)."""
    from torch.ao.quantization import fuse_modules, fuse_modules_qat

    fuse = fuse_modules_qat if qat else fuse_modules
    model.train(qat)

    for block in model.modules():
        names = dict(block.named_children())
        if {"conv", "act"} <= set(names) and isinstance(names["conv"], nn.Conv2d) and isinstance(names["act"], nn.ReLU):
            norm = names.get("norm")
            if isinstance(norm, nn.BatchNorm2d):
                fuse(block, [["conv", "norm", "act"]], inplace=True)
            elif isinstance(norm, nn.Identity) or norm is None:
                fuse(block, [["conv", "act"]], inplace=True)


def _whole_model_ok(model: nn.Module) -> bool:
    """True when every op can run on int8 tensors: conv/BN/ReLU/pool/Linear nets (no DyT, LayerNorm, attention)."""
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Linear, nn.Identity, nn.Sequential)
    return all(isinstance(m, allowed) for m in model.modules() if m is not model)


def _wrap_layers(model: nn.Module, qconfig: Any) -> int:
    """Wrap every Linear/Conv2d in a ``QuantWrapper`` carrying ``qconfig`` (nothing else gets one, so LayerNorm,
    DyT and the rest stay fp32)."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, QUANTIZABLE):
            wrapper = QuantWrapper(child)
            wrapper.qconfig = qconfig
            setattr(model, name, wrapper)
            count += 1
        else:
            count += _wrap_layers(child, qconfig)
    return count


def _prepare_static(model: nn.Module, qconfig: Any, scope: str, backend: str,
                    qat: bool = False) -> tuple[nn.Module, str]:
    """Copy, fuse and wrap ``model`` for eager-mode static quantization; returns the model and the scope used."""
    if scope not in ("auto", "model", "layers"):
        raise ValueError(f"scope={scope!r} is not valid; choose 'auto', 'model' or 'layers'")
    if not quantizable_layers(model):
        raise _nothing_to_quantize(model)
    m = copy.deepcopy(model).cpu()
    if scope == "auto":
        scope = "model" if _whole_model_ok(m) else "layers"
    if scope == "model":
        if not _whole_model_ok(m):
            raise ValueError("scope='model' needs a model made only of conv/BatchNorm/ReLU/pool/Linear layers; "
                             "use scope='layers' for models with DyT, LayerNorm or attention")
        _fuse_convnet(m, qat)
        m = QuantWrapper(m)
        m.qconfig = qconfig
    else:
        _wrap_layers(m, qconfig)
    torch.backends.quantized.engine = backend
    return m, scope


def static_int8(model: nn.Module, calibration: DataLoader | torch.Tensor | Sequence[Any],
                observer: str = "histogram", per_channel: bool = True, backend: str = "x86",
                scope: str = "auto", num_batches: int | None = None, weight_bits: int = 8) -> nn.Module:
    """Static int8 post-training quantization with calibration (``prepare`` -> observe -> ``convert``).

    ``scope="model"`` quantizes the whole network between one QuantStub/DeQuantStub after fusing
    conv+BatchNorm+ReLU (possible for plain ConvNets); ``scope="layers"`` wraps every Linear/Conv2d in its own
    QuantStub/DeQuantStub so unsupported ops (DyT, LayerNorm, softmax attention, GELU, residual adds) stay
    fp32; ``"auto"`` picks ``"model"`` when it is possible, and falls back to ``"layers"`` when an int8 op of the
    whole-model graph fails at run time (e.g. torch's quantized mean on a 1x1 feature map). The chosen scope is
    stored as ``.int8_scope``. ``weight_bits < 8`` restricts the int8 weights to that many bits' worth of levels.
    """
    batches = _batches(calibration, num_batches)
    with _torch_ao():
        from torch.ao.quantization import convert, prepare

        qconfig = static_qconfig(observer, per_channel, backend, weight_bits=weight_bits)
        m, used = _prepare_static(model, qconfig, scope, _check_backend(backend))
        m.eval()
        prepare(m, inplace=True)
        with torch.no_grad():
            for x in batches:
                m(x.cpu())
        convert(m, inplace=True)
        if scope == "auto" and used == "model":
            try:
                with torch.no_grad():
                    m(batches[0][:2].cpu())
            except (RuntimeError, NotImplementedError):
                return static_int8(model, batches, observer, per_channel, backend, "layers", None, weight_bits)
    m.int8_scope = used
    return m


def qat_int8_prepare(model: nn.Module, weight_bits: int = 8, per_channel: bool = True, backend: str = "x86",
                     scope: str = "auto") -> nn.Module:
    """PyTorch's QAT flow, step 1: a copy with fake-quantize modules (``prepare_qat``) ready to ``fit``."""
    with _torch_ao():
        from torch.ao.quantization import prepare_qat

        qconfig = static_qconfig("minmax", per_channel, backend, qat=True, weight_bits=weight_bits)
        m, used = _prepare_static(model, qconfig, scope, _check_backend(backend), qat=True)
        m.train()
        prepare_qat(m, inplace=True)
    m.int8_scope = used
    return m


def qat_int8_convert(model: nn.Module) -> nn.Module:
    """PyTorch's QAT flow, step 2: convert the fine-tuned fake-quantized model to a real int8 model (a copy)."""
    with _torch_ao():
        from torch.ao.quantization import convert

        m = copy.deepcopy(model).cpu().eval()
        convert(m, inplace=True)
    return m


# ----------------------------------------------------------------------------------------------- half precision

class HalfPrecision(nn.Module):
    """A copy of ``model`` stored and run in float16/bfloat16; casts inputs in and logits back to float32."""

    def __init__(self, model: nn.Module, dtype: str = "float16") -> None:
        super().__init__()
        if dtype not in HALF_DTYPES:
            raise ValueError(f"dtype={dtype!r} is not valid; choose one of {list(HALF_DTYPES)}")
        self.dtype = HALF_DTYPES[dtype]
        self.model = copy.deepcopy(model).to(self.dtype).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


# ----------------------------------------------------------------------------------------------- mixed precision

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
