"""OpenVINO: ``openvino.convert_model`` straight from the PyTorch module, int8 by ``nncf.quantize`` on real images.

Two details decide whether the numbers mean anything. On CPUs with bf16/AMX support OpenVINO runs an "fp32" model
in bf16 unless ``INFERENCE_PRECISION_HINT=f32`` is set, so the fp32 baseline would already be reduced precision.
And ``save_model`` compresses weights to fp16 by default, so the fp32 file would already be half size; both are
turned off here so fp32 means fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..common import DeploymentError, as_numpy, failing_as, folder_size
from ..registry import EdgeRuntime, register_runtime
from ..runners import Runner


def convert(model: nn.Module, example_shape: Sequence[int]) -> Any:
    """An ``openvino.Model`` of ``model`` with a dynamic batch dimension."""
    import openvino as ov

    with failing_as(f"openvino.convert_model of {type(model).__name__}"):
        return ov.convert_model(model, example_input=torch.randn(2, *example_shape),
                                input=[ov.PartialShape([-1, *example_shape])])


def quantize(ov_model: Any, calibration: Sequence[torch.Tensor]) -> Any:
    """NNCF post-training int8 (``ModelType.TRANSFORMER`` for transformers: keeps the softmax path accurate) with
    activation ranges from the real ``calibration`` batches."""
    if not calibration:
        raise ValueError("openvino int8 needs calibration images (calibration=...): NNCF sets activation ranges "
                         "from them")
    items = [as_numpy(b) for b in calibration]
    is_transformer = any(op.get_type_name() in ("Softmax", "ScaledDotProductAttention") for op in ov_model.get_ops())
    with failing_as("nncf.quantize"):
        import nncf

        kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if is_transformer else {}
        return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=len(items), **kwargs)


#: How every OpenVINO model is compiled (``INFERENCE_NUM_THREADS`` is added per runner).
CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


def _plain(value: Any, key: str) -> Any:
    """A property value as JSON: ints and bools stay, an element type becomes its short name (``f32``), an enum its
    name (``LATENCY``), and the ISA is cut out of ``RUNTIME_REQUIREMENTS`` (``"...;isa=Intel AVX-512 ..."``)."""
    if isinstance(value, (bool, int)):
        return value
    if hasattr(value, "to_string"):  # openvino.Type
        return value.to_string()
    text = str(getattr(value, "name", None) or value)
    if key == "isa":
        text = next((p[4:] for p in text.split(";") if p.startswith("isa=")), text)
    return text


class OpenVinoRunner(Runner):
    """A compiled OpenVINO model on the CPU: a real fp32 hint, ``threads`` threads, one infer request per shape.

    The IR keeps a dynamic batch, but a dynamic shape costs shape inference and kernel selection on every call
    (measured ~0.1 ms, a third of a batch-1 inference), so each of ``batch_sizes`` also gets its own static
    compiled copy; other sizes use the dynamic one. Every copy is compiled with :data:`CONFIG`: the precision is
    pinned to f32 (an int8 IR still runs its quantized ops in int8; only the rest stays f32 instead of bf16),
    the threads are ``threads`` and the hint is LATENCY (one stream: one inference uses all the threads, like
    the eager reference and the other runtimes); :meth:`settings` reads back what OpenVINO chose.
    """

    def __init__(self, xml: Path, precision: str, threads: int, batch_sizes: Sequence[int] = (),
                 info: dict[str, Any] | None = None) -> None:
        import openvino as ov

        super().__init__("openvino", precision, xml, folder_size(xml) + folder_size(xml.with_suffix(".bin")), info)
        config = {**CONFIG, "INFERENCE_NUM_THREADS": int(threads)}
        core = ov.Core()
        try:
            self.compiled = core.compile_model(str(xml), "CPU", config)
            self._compiled: dict[int | None, Any] = {None: self.compiled}
            self.requests: dict[int | None, Any] = {None: self.compiled.create_infer_request()}
            for bs in batch_sizes:
                model = core.read_model(str(xml))
                model.reshape([bs, *model.input(0).get_partial_shape()[1:].to_shape()])
                self._compiled[bs] = core.compile_model(model, "CPU", config)
                self.requests[bs] = self._compiled[bs].create_infer_request()
        except Exception as e:  # an artifact OpenVINO cannot compile is a failed deployment
            raise DeploymentError(f"OpenVINO could not compile {xml.name}: {e}") from e
        chosen = self.settings()
        self.info["inference_precision"] = chosen["precision"]
        self.info["threads"] = chosen["threads"]

    def settings(self) -> dict[str, Any]:
        """Read back from every compiled copy: ``threads`` (``INFERENCE_NUM_THREADS``), ``precision``
        (``INFERENCE_PRECISION_HINT``), ``hint`` (``PERFORMANCE_HINT``), ``streams`` (``NUM_STREAMS``), ``pinning``
        (``ENABLE_CPU_PINNING``) and ``isa`` (the kernels' instruction set, from ``RUNTIME_REQUIREMENTS``). A value
        that differs between the copies is given as ``"a/b"``."""
        props = {"threads": "INFERENCE_NUM_THREADS", "precision": "INFERENCE_PRECISION_HINT",
                 "hint": "PERFORMANCE_HINT", "streams": "NUM_STREAMS", "pinning": "ENABLE_CPU_PINNING",
                 "isa": "RUNTIME_REQUIREMENTS"}
        out: dict[str, Any] = {}
        for key, prop in props.items():
            seen = []
            for compiled in self._compiled.values():
                try:
                    value = compiled.get_property(prop)
                except Exception:  # a property this OpenVINO version does not have
                    continue
                value = _plain(value, key)
                if value not in seen:
                    seen.append(value)
            if seen:
                out[key] = seen[0] if len(seen) == 1 else "/".join(map(str, seen))
        return out

    def _run_numpy(self, x: np.ndarray) -> np.ndarray:
        request = self.requests.get(len(x))
        if request is None:
            request = self.requests[None]
        request.infer({0: x}, share_inputs=True)
        return request.get_output_tensor(0).data.copy()


def build_openvino(model: nn.Module, precision: str, example_shape: Sequence[int], folder: Path,
                   calibration: Sequence[torch.Tensor] | None) -> tuple[Path, dict[str, Any]]:
    """Convert (and quantize) ``model`` and save it as ``model.xml`` + ``model.bin`` in ``folder``."""
    import openvino as ov

    if precision == "int8" and not calibration:
        raise ValueError("openvino int8 needs calibration images (calibration=...)")
    ov_model = convert(model, example_shape)
    if precision == "int8":
        ov_model = quantize(ov_model, calibration or [])
    xml = folder / "model.xml"
    with failing_as("openvino.save_model"):
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    fq = sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
    return xml, {"fake_quantize_nodes": fq} if precision == "int8" else {}


def _build(ready: nn.Module, precision: str, shape: Sequence[int], folder: Path,
           batches: Sequence[torch.Tensor] | None, sizes: Sequence[int], threads: int) -> tuple[dict[str, str], dict]:
    path, info = build_openvino(ready, precision, shape, folder, batches)
    return {"model": path.name, "weights": path.with_suffix(".bin").name}, info


def _load(folder: Path, files: dict[str, str], precision: str, sizes: Sequence[int], threads: int,
          info: dict[str, Any]) -> OpenVinoRunner:
    return OpenVinoRunner(folder / files["model"], precision, threads, sizes, info)


# OpenVINO has a native SDPA op (and a smaller IR with it)
register_runtime(EdgeRuntime("openvino", ("fp32", "int8"), calibrated=("int8",), attention="sdpa",
                             libraries=("openvino", "nncf"), loggers=("nncf", "openvino"), order=3, build=_build,
                             load=_load))
