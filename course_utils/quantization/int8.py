"""Real int8 models with torchao, the int8 stack PyTorch maintains (the eager API in ``torch.ao`` is deprecated).

Three flows, one per way of getting the activations' ranges:

- ``quantize_(model, config)``, eager: :func:`dynamic_int8` (int8 weights, each batch's activations quantized on the
  fly, ``Int8DynamicActivationInt8WeightConfig``) and :func:`weight_only_int8` (``Int8WeightOnlyConfig``). The
  weights become torchao tensor subclasses; the model stays an ``nn.Module``.
- PT2E, static: :func:`static_int8` exports the graph (``torch.export``), lets a quantizer place observers
  (``prepare_pt2e``), calibrates, and replaces them by quantize/dequantize pairs (``convert_pt2e``). Eager, the
  result only *simulates* int8; :func:`compile_int8` (inductor, frozen weights) fuses each dq -> linear -> q
  pattern into one int8 kernel, which is where the speed comes from.
- QAT: :func:`qat_int8_prepare` swaps Linear for fake-quantized twins (``QATConfig(step="prepare")``); after
  fine-tuning, :func:`qat_int8_convert` turns them into real int8 weights (``QATConfig(step="convert")``).

Every function works on a copy with any pruning masks folded in, so a pruned model quantizes like any other.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..args import check_choice
from ..modules import clone_model
from .fake import _batches, _nothing_to_quantize, quantizable_layers
from .primitives import check_bits

OBSERVERS = ("minmax", "histogram")
#: The largest batch an exported (PT2E) model accepts; its batch dimension is dynamic up to here.
MAX_BATCH = 4096


def _check_linear(model: nn.Module) -> None:
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer: nothing to quantize")


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 with torchao: int8 Linear weights per output channel, activations quantized per token on the
    fly (symmetric), int8 x int8 products. No calibration. Returns a quantized copy (CPU, eager)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    _check_linear(model)
    m = clone_model(model, fold=True).cpu().eval()
    # set_inductor_config=False: quantize_ would otherwise change torch._inductor's global settings for the process
    quantize_(m, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))
    return m


def weight_only_int8(model: nn.Module) -> nn.Module:
    """Weight-only int8 with torchao: Linear weights stored in int8 per output channel and dequantized inside the
    product; activations stay fp32. Saves memory traffic, not arithmetic. Returns a quantized copy (CPU, eager)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    _check_linear(model)
    m = clone_model(model, fold=True).cpu().eval()
    quantize_(m, Int8WeightOnlyConfig(set_inductor_config=False))
    return m


def pt2e_quantizer(observer: str = "histogram", per_channel: bool = True) -> Any:
    """torchao's x86 PT2E quantizer: uint8 activations (one scale per tensor, from ``observer``), int8 weights
    symmetric per output channel (or per tensor). Annotates Conv2d/Linear and the ops that can stay int8 between
    them (pooling, residual adds); everything else, DyT and LayerNorm included, runs in fp32 between a dequantize
    and a quantize."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    check_choice("observer", observer, OBSERVERS)
    if not isinstance(per_channel, bool):
        raise ValueError(f"per_channel must be True or False, got {per_channel!r}")
    config = xiq.get_default_x86_inductor_quantization_config()
    if observer == "minmax":  # the default observes a histogram; swap only the activation observer
        act = config.input_activation
        spec = QuantizationSpec(dtype=act.dtype, quant_min=act.quant_min, quant_max=act.quant_max,
                                qscheme=act.qscheme, is_dynamic=False,
                                observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
        config = QuantizationConfig(spec, spec, config.weight, config.bias, config.is_qat)
    if not per_channel:
        w = config.weight
        spec = QuantizationSpec(dtype=w.dtype, quant_min=w.quant_min, quant_max=w.quant_max,
                                qscheme=torch.per_tensor_symmetric, is_dynamic=False,
                                observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
        config = QuantizationConfig(config.input_activation, config.output_activation, spec, config.bias,
                                    config.is_qat)
    return xiq.X86InductorQuantizer().set_global(config)


def export_model(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``torch.export`` of an eval copy (masks folded), batch dimension dynamic: the graph PT2E quantizes."""
    m = clone_model(model, fold=True).cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    example = example[:2].cpu() if len(example) >= 2 else example.cpu().repeat(2, *([1] * (example.dim() - 1)))
    return torch.export.export(m, (example,), dynamic_shapes=({0: batch},)).module()


@torch.no_grad()
def static_int8(model: nn.Module, calibration: DataLoader | torch.Tensor | Sequence[Any],
                observer: str = "histogram", per_channel: bool = True, num_batches: int | None = None) -> nn.Module:
    """Static int8 with PT2E: export, ``prepare_pt2e`` with the x86 quantizer, calibrate on ``calibration``
    (a loader, a tensor or a list of batches), ``convert_pt2e``. Returns the converted graph module: its
    quantize/dequantize pairs carry the calibrated ranges (eager it simulates int8; :func:`compile_int8` runs it
    in int8 kernels). A ConvNet's BatchNorm is folded into the convolution on the way."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not quantizable_layers(model):
        raise _nothing_to_quantize(model)
    quantizer = pt2e_quantizer(observer, per_channel)
    batches = _batches(calibration, num_batches)
    with warnings.catch_warnings():  # "input of maxpool2d is not quantized": the quantizer says it keeps it fp32
        warnings.filterwarnings("ignore", message="The input of .* is not quantized", category=UserWarning)
        prepared = prepare_pt2e(export_model(model, batches[0]), quantizer)
    for x in batches:
        prepared(x.cpu())
    return _with_train_eval(convert_pt2e(prepared))


def _with_train_eval(graph_module: nn.Module) -> nn.Module:
    """``.eval()``/``.train()`` on an exported module raise unless torchao's switch is installed, and that switch
    returns None; the course's metrics call ``model.eval()`` and the zoo chains it, so make it return the model."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    switch = allow_exported_model_train_eval(graph_module).train

    def train(self: nn.Module, mode: bool = True) -> nn.Module:
        switch(mode)
        return self

    graph_module.train = types.MethodType(train, graph_module)
    graph_module.eval = types.MethodType(lambda self: self.train(False), graph_module)
    return graph_module


def compile_int8(model: nn.Module) -> nn.Module:
    """``torch.compile`` (inductor, weights frozen as constants) of a PT2E int8 model, so its q/dq patterns lower to
    oneDNN int8 kernels. Compiled per input shape (``dynamic=False``): the first call at each batch size compiles."""
    return _FrozenCompiled(torch.compile(model, dynamic=False))


class _FrozenCompiled(nn.Module):
    """A compiled model that compiles (on its first call at each shape) with inductor's ``freezing`` on, which the
    int8 lowering needs, and hides inductor's internal copy-construct UserWarning, which the course cannot act on."""

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch._inductor import config

        with warnings.catch_warnings(), config.patch(freezing=True):
            warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
            return self.compiled(x)


def _qat_base(weight_bits: int) -> Any:
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig
    from torchao.quantization.granularity import PerAxis

    check_bits(weight_bits, "weight_bits")
    if weight_bits not in (4, 8):
        raise ValueError(f"weight_bits must be 4 or 8 for torchao's int8-activation QAT, got {weight_bits}")
    return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4 if weight_bits == 4 else torch.int8,
                                                 weight_granularity=PerAxis(0))


def qat_int8_prepare(model: nn.Module, weight_bits: int = 8) -> nn.Module:
    """torchao QAT, step 1: a copy whose Linear layers fake-quantize their weights (``weight_bits``, symmetric per
    output channel) and their inputs (int8, per token, as the converted model will), ready to ``fit``."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    _check_linear(model)
    m = clone_model(model, fold=True).cpu().train()
    quantize_(m, QATConfig(_qat_base(weight_bits), step="prepare"))
    m.qat_weight_bits = weight_bits
    return m


def qat_int8_convert(model: nn.Module) -> nn.Module:
    """torchao QAT, step 2: a copy of the fine-tuned model with real int8 (or int4-in-int8) Linear weights and
    dynamically quantized int8 activations."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    bits = getattr(model, "qat_weight_bits", None)
    if bits is None:
        raise ValueError("model was not prepared by qat_int8_prepare (it has no qat_weight_bits)")
    m = clone_model(model).cpu().eval()
    quantize_(m, QATConfig(_qat_base(bits), step="convert"))
    return m


def ptq_int8(model: nn.Module, weight_bits: int = 8) -> nn.Module:
    """The same int8 format as :func:`qat_int8_convert` without training: ``quantize_`` with the QAT base config
    (the PTQ arm of the QAT comparison)."""
    from torchao.quantization import quantize_

    _check_linear(model)
    m = clone_model(model, fold=True).cpu().eval()
    quantize_(m, _qat_base(weight_bits))
    return m
