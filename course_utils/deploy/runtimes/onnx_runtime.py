"""ONNX Runtime: ``torch.onnx.export`` (dynamo exporter, dynamic batch), then int8 by ``quantize_dynamic`` or
``quantize_static`` (QDQ, per-channel weights, calibrated on real images).

Also reads the exported graph back: DyT must appear as ``Mul(alpha, x) -> Tanh -> Mul(., weight) -> Add(., bias)``
with a one-element ``alpha``, i.e. the normalization-free layer costs four element-wise ops and no reduction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..common import DeploymentError, as_numpy, failing_as, folder_size
from ..registry import EdgeRuntime, register_runtime
from ..runners import Runner

INPUT_NAME = "x"


def export_onnx(model: nn.Module, example_shape: Sequence[int], path: Path) -> Path:
    """Write ``model`` (an export-ready eval copy) to ``path`` as ONNX with a dynamic batch dimension."""
    example = (torch.randn(2, *example_shape),)
    with failing_as(f"torch.onnx.export of {type(model).__name__}"):
        program = torch.onnx.export(model, example, input_names=[INPUT_NAME], output_names=["logits"],
                                    dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        program.save(str(path))
        strip_debug_info(path)
    return path


def strip_debug_info(path: Path) -> Path:
    """Drop the per-node debug metadata (source FX node, module path) the dynamo exporter writes; on a small
    model it is most of the file, and a deployed artifact does not need it."""
    import onnx

    proto = onnx.load(str(path))
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(proto, str(path))
    return path


def _reader(batches: Sequence[torch.Tensor]) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` over a list of real image batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_Batches, CalibrationDataReader):
        pass

    return Reader(batches)


class _Batches:
    """The reader's protocol: ``get_next()`` returns one input feed, then ``None`` when done."""

    def __init__(self, batches: Sequence[torch.Tensor]) -> None:
        self._batches = [as_numpy(b) for b in batches]
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: x}

    def rewind(self) -> None:
        self._it = iter(self._batches)


#: Ops static int8 quantizes: the weight-carrying ones. Quantizing DyT's element-wise Mul/Tanh/Add too only adds
#: Quantize/Dequantize pairs around cheap ops (measured: lower output cosine, larger file, no speedup).
STATIC_OPS = ("MatMul", "Gemm", "Conv")


def quantize_onnx(src: Path, dst: Path, precision: str, calibration: Sequence[torch.Tensor] | None = None) -> Path:
    """int8 copy of the ONNX model ``src``: ``"int8_dynamic"`` (weights int8, activations quantized per batch at
    run time) or ``"int8_static"`` (QDQ around :data:`STATIC_OPS`, per-channel weights, activation ranges from
    ``calibration``)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if precision not in ("int8_dynamic", "int8_static"):
        raise ValueError(f"precision={precision!r} is not an ONNX int8 mode; choose 'int8_dynamic' or 'int8_static'")
    if precision == "int8_static" and not calibration:
        raise ValueError("int8_static needs calibration images (calibration=...): activation ranges come from them")
    pre = dst.with_name(dst.stem + "-pre.onnx")
    with failing_as(f"onnxruntime {precision} quantization of {src.name}"):
        quant_pre_process(str(src), str(pre))
        if precision == "int8_dynamic":
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
        else:
            quantize_static(str(pre), str(dst), _reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=list(STATIC_OPS))
    pre.unlink(missing_ok=True)
    return dst


def op_counts(path: Path | Any) -> Counter:
    """How many nodes of each ONNX op type the graph at ``path`` (or a loaded ``ModelProto``) holds."""
    import onnx

    proto = onnx.load(str(path)) if isinstance(path, (str, Path)) else path
    return Counter(n.op_type for n in proto.graph.node)


def dyt_patterns(path: Path | Any) -> list[dict[str, Any]]:
    """Every DyT found in the graph as ``Mul(scalar alpha) -> Tanh -> Mul -> Add``: alpha's initializer name and
    value, and the weight and bias initializers (shapes). An exporter that folded or reshaped DyT finds fewer."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path)) if isinstance(path, (str, Path)) else path
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in proto.graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR}
    inits.update(consts)
    users: dict[str, list[Any]] = {}
    for n in proto.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def only_user(name: str, op: str) -> Any:
        nxt = users.get(name, [])
        return nxt[0] if len(nxt) == 1 and nxt[0].op_type == op else None

    found = []
    for mul in (n for n in proto.graph.node if n.op_type == "Mul"):
        alpha = next((i for i in mul.input if i in inits and inits[i].size == 1), None)
        tanh = only_user(mul.output[0], "Tanh") if alpha is not None else None
        scale = only_user(tanh.output[0], "Mul") if tanh is not None else None
        shift = only_user(scale.output[0], "Add") if scale is not None else None
        if shift is None:
            continue
        weight = next((i for i in scale.input if i in inits), None)
        bias = next((i for i in shift.input if i in inits), None)
        found.append({"alpha": alpha, "alpha_value": float(inits[alpha].reshape(-1)[0]),
                      "weight_shape": tuple(inits[weight].shape) if weight else None,
                      "bias_shape": tuple(inits[bias].shape) if bias else None})
    return found


class OnnxRuntimeRunner(Runner):
    """An ``onnxruntime.InferenceSession`` on the CPU, all graph optimizations on, ``threads`` intra-op threads."""

    def __init__(self, path: Path, precision: str, threads: int, info: dict[str, Any] | None = None) -> None:
        import onnxruntime as ort

        super().__init__("onnxruntime", precision, path, folder_size(path), info)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # an artifact ORT cannot load is a failed deployment
            raise DeploymentError(f"onnxruntime could not load {path.name}: {e}") from e
        self._input = self.session.get_inputs()[0].name
        self.info["threads"] = self.settings()["threads"]

    def settings(self) -> dict[str, Any]:
        """The session's own options, read back: ``threads`` (intra-op) and ``inter_op_threads``."""
        opts = self.session.get_session_options()
        return {"threads": int(opts.intra_op_num_threads), "inter_op_threads": int(opts.inter_op_num_threads)}

    def _run_numpy(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: x})[0]


def build_onnxruntime(model: nn.Module, precision: str, example_shape: Sequence[int], folder: Path,
                      calibration: Sequence[torch.Tensor] | None, threads: int) -> tuple[Path, dict[str, Any]]:
    """Export (and quantize) ``model`` into ``folder``; returns the artifact's path inside it and graph facts."""
    fp32 = export_onnx(model, example_shape, folder / "model.onnx")
    info: dict[str, Any] = {"dyt_layers_in_graph": len(dyt_patterns(fp32))}
    if precision == "fp32":
        return fp32, info
    out = quantize_onnx(fp32, folder / f"model-{precision}.onnx", precision, calibration)
    fp32.unlink()
    counts = op_counts(out)
    info["quantize_nodes"] = counts["QuantizeLinear"] + counts["DynamicQuantizeLinear"]
    return out, info


def _build(ready: nn.Module, precision: str, shape: Sequence[int], folder: Path,
           batches: Sequence[torch.Tensor] | None, sizes: Sequence[int], threads: int) -> tuple[dict[str, str], dict]:
    path, info = build_onnxruntime(ready, precision, shape, folder, batches, threads)
    return {"model": path.name}, info


def _load(folder: Path, files: dict[str, str], precision: str, sizes: Sequence[int], threads: int,
          info: dict[str, Any]) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(folder / files["model"], precision, threads, info)


register_runtime(EdgeRuntime("onnxruntime", ("fp32", "int8_dynamic", "int8_static"), calibrated=("int8_static",),
                             attention="bmm", libraries=("onnx", "onnxruntime"),
                             loggers=("torch.onnx", "onnxscript", "onnxruntime"), order=2, build=_build, load=_load))
