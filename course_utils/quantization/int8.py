"""Real int8 models with PyTorch's eager-mode ``torch.ao.quantization``: dynamic, static (calibrated) and QAT.

These run int8 kernels (fbgemm/oneDNN on x86, qnnpack on ARM) without compiling anything. The API is deprecated in
favour of torchao, whose int8 models are faster than fp32 on a CPU only under ``torch.compile``; its repeated
deprecation warnings are silenced inside these functions only. Every function works on a copy with any pruning
masks folded in, so a pruned model quantizes like any other.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..args import check_choice
from ..modules import clone_model, replace_modules
from .fake import QUANTIZABLE, _batches, _nothing_to_quantize, quantizable_layers
from .primitives import check_bits, qrange

OBSERVERS = ("minmax", "histogram")
BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")
#: Messages of the deprecation warnings that torch.ao.quantization repeats on every call.
_NOISY = (r"torch\.ao\.quantization is deprecated", r"Please use quant_min and quant_max",
          r"torch\.quantize_per_tensor, torch\.quantize_per_channel", r".*quantized tensor creation",
          r".*_aminmax is deprecated", r".*is deprecated and will be removed.*quantiz")


@contextlib.contextmanager
def quiet_torch_ao() -> Iterator[None]:
    """Run ``torch.ao.quantization`` calls without their repeated deprecation warnings (this block only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for pattern in _NOISY:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def _check_backend(backend: str) -> str:
    check_choice("backend", backend, BACKENDS)
    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(f"backend={backend!r} is not supported by this torch build "
                         f"(supported: {torch.backends.quantized.supported_engines})")
    return backend


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 (``torch.ao.quantization.quantize_dynamic``): int8 Linear weights, activations quantized
    on the fly per batch. Returns a quantized copy (CPU)."""
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer: nothing to quantize")
    with quiet_torch_ao():
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(clone_model(model, fold=True).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


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

    check_choice("observer", observer, OBSERVERS)
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


def _wrap_layers(model: nn.Module, qconfig: Any) -> nn.Module:
    """Wrap every Linear/Conv2d in a ``QuantWrapper`` carrying ``qconfig`` (nothing else gets one, so LayerNorm,
    DyT and the rest stay fp32)."""
    def wrap(layer: nn.Module, fqn: str) -> QuantWrapper:
        wrapper = QuantWrapper(layer)
        wrapper.qconfig = qconfig
        return wrapper

    return replace_modules(model, wrap, lambda m, fqn: isinstance(m, QUANTIZABLE))


def _prepare_static(model: nn.Module, qconfig: Any, scope: str, backend: str,
                    qat: bool = False) -> tuple[nn.Module, str]:
    """Copy, fuse and wrap ``model`` for eager-mode static quantization; returns the model and the scope used."""
    check_choice("scope", scope, ("auto", "model", "layers"))
    if not quantizable_layers(model):
        raise _nothing_to_quantize(model)
    m = clone_model(model, fold=True).cpu()
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
        m = _wrap_layers(m, qconfig)
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
    with quiet_torch_ao():
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
    with quiet_torch_ao():
        from torch.ao.quantization import prepare_qat

        qconfig = static_qconfig("minmax", per_channel, backend, qat=True, weight_bits=weight_bits)
        m, used = _prepare_static(model, qconfig, scope, _check_backend(backend), qat=True)
        m.train()
        prepare_qat(m, inplace=True)
    m.int8_scope = used
    return m


def qat_int8_convert(model: nn.Module) -> nn.Module:
    """PyTorch's QAT flow, step 2: convert the fine-tuned fake-quantized model to a real int8 model (a copy)."""
    with quiet_torch_ao():
        from torch.ao.quantization import convert

        m = clone_model(model).cpu().eval()
        convert(m, inplace=True)
    return m
