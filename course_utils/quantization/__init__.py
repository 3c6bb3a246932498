"""Quantization, from the arithmetic to real int8 kernels.

- :mod:`.primitives`: the lesson — scale, zero point, quantize/dequantize, fake quantization with an STE.
- :mod:`.fake`: whole-model fake quantization for bit-width sweeps (PTQ) and quantization-aware training.
- :mod:`.activations`: which layer inputs are hard to quantize (outliers, kurtosis, SQNR).
- :mod:`.int8`: real int8 models with torchao: ``quantize_`` (dynamic, weight-only), PT2E static, QAT.
- :mod:`.pt2e`: where PT2E puts quantize/dequantize nodes; DyT's static output bound as a scale.
- :mod:`.integer`: inside an int8 kernel: a calibration observer, a Linear in integer arithmetic (against oneDNN's).
- :mod:`.half`: fp16 / bf16 copies.
- :mod:`.mixed`: per-layer bit widths under a budget.
"""

from .activations import activation_report, layer_inputs, norm_output_verdict, outlier_stats
from .fake import (
    QUANTIZABLE,
    FakeQuantLayer,
    calibrate,
    fake_quant_layers,
    fake_quantize_model,
    quantizable_layers,
    set_bits,
)
from .half import HALF_DTYPES, HalfPrecision, half_speed_reading, pace
from .int8 import (
    OBSERVERS,
    compile_int8,
    dynamic_int8,
    export_model,
    pt2e_quantizer,
    ptq_int8,
    qat_int8_convert,
    qat_int8_prepare,
    static_int8,
    weight_only_int8,
)
from .integer import (
    OBSERVER_METHODS,
    IntegerLinear,
    int_linear,
    integer_linear_model,
    layer_ranges,
    observe_range,
    onednn_int_linear,
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
from .pt2e import bound_qparams, dyt_bound, placement_summary, qdq_placement, set_bound_qparams

__all__ = [
    "FakeQuantLayer", "FakeQuantizeSTE", "HALF_DTYPES", "HalfPrecision", "IntegerLinear", "half_speed_reading",
    "pace", "MAX_BITS", "MIN_BITS", "OBSERVERS", "OBSERVER_METHODS", "QUANTIZABLE", "activation_report",
    "assignment_loss", "average_bits", "bound_qparams", "calibrate", "check_bits", "compile_int8", "dequantize",
    "describe_assignment", "dynamic_int8", "dyt_bound", "export_model", "fake_quant_layers", "fake_quantize",
    "fake_quantize_model", "greedy_bit_allocation", "greedy_bit_path", "int_linear", "integer_linear_model",
    "layer_inputs", "layer_ranges", "layer_sensitivity", "observe_range", "onednn_int_linear", "outlier_stats",
    "placement_summary", "pt2e_quantizer", "ptq_int8", "qat_int8_convert", "qat_int8_prepare", "qdq_placement",
    "qparams_from_range", "qrange", "quantizable_layers", "quantization_error", "quantize", "scale_zero_point",
    "set_bits", "set_bound_qparams", "static_int8", "weight_only_int8", "weight_sizes", "norm_output_verdict"
]
