"""Quantization, from the arithmetic to real int8 kernels.

- :mod:`.primitives`: the lesson — scale, zero point, quantize/dequantize, fake quantization with an STE.
- :mod:`.fake`: whole-model fake quantization for bit-width sweeps (PTQ) and quantization-aware training.
- :mod:`.activations`: which layer inputs are hard to quantize (outliers, kurtosis, SQNR).
- :mod:`.int8`: PyTorch's real int8 models (``torch.ao.quantization``: dynamic, static, QAT).
- :mod:`.half`: fp16 / bf16 copies.
- :mod:`.mixed`: per-layer bit widths under a budget.
"""

from .activations import activation_report, layer_inputs, outlier_stats
from .fake import (
    QUANTIZABLE,
    FakeQuantLayer,
    calibrate,
    fake_quant_layers,
    fake_quantize_model,
    quantizable_layers,
    set_bits,
)
from .half import HALF_DTYPES, HalfPrecision
from .int8 import (
    BACKENDS,
    OBSERVERS,
    QuantWrapper,
    dynamic_int8,
    qat_int8_convert,
    qat_int8_prepare,
    quiet_torch_ao,
    static_int8,
    static_qconfig,
)
from .mixed import (
    assignment_loss,
    average_bits,
    describe_assignment,
    greedy_bit_allocation,
    greedy_bit_path,
    layer_sensitivity,
    weight_sizes,
)
from .primitives import (
    MAX_BITS,
    MIN_BITS,
    FakeQuantizeSTE,
    check_bits,
    dequantize,
    fake_quantize,
    qparams_from_range,
    qrange,
    quantization_error,
    quantize,
    scale_zero_point,
)

__all__ = [
    "BACKENDS", "FakeQuantLayer", "FakeQuantizeSTE", "HALF_DTYPES", "HalfPrecision", "MAX_BITS", "MIN_BITS",
    "OBSERVERS", "QUANTIZABLE", "QuantWrapper", "activation_report", "assignment_loss", "average_bits", "calibrate",
    "check_bits", "dequantize", "describe_assignment", "dynamic_int8", "fake_quant_layers", "fake_quantize",
    "fake_quantize_model", "greedy_bit_allocation", "greedy_bit_path", "layer_inputs", "layer_sensitivity",
    "outlier_stats", "qat_int8_convert", "qat_int8_prepare", "qparams_from_range", "qrange", "quantizable_layers",
    "quantization_error", "quantize", "quiet_torch_ao", "scale_zero_point", "set_bits", "static_int8",
    "static_qconfig", "weight_sizes",
]
