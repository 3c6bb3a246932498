"""ExecuTorch with the XNNPACK delegate: ``torch.export`` -> XNNPACK partitioner -> one ``.pte`` per batch size.

int8 goes through PT2E: the exported graph is annotated by ``XNNPACKQuantizer`` (symmetric, per-channel weights),
calibrated on real images and converted, then lowered. What XNNPACK cannot take runs on ExecuTorch's portable CPU
kernels between *partitions*; the partition count is the number to watch (SDPA alone splits a ViT into ~10).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attention import export_friendly
from ..common import failing_as, folder_size, quiet
from ..registry import EdgeRuntime, register_runtime
from ..runners import Runner

_DELEGATE = "executorch_call_delegate"


def _op_name(node: torch.fx.Node) -> str:
    target = node.target
    return getattr(target, "__name__", None) or getattr(target, "_name", None) or str(target)


def quantize_pt2e(model: nn.Module, example_shape: Sequence[int], calibration: Sequence[torch.Tensor]) -> nn.Module:
    """PT2E int8 for XNNPACK: export with a dynamic batch, annotate, run the calibration batches, convert."""
    if not calibration:
        raise ValueError("executorch int8 needs calibration images (calibration=...): PT2E observers set the "
                         "activation ranges from them")
    with failing_as("PT2E quantization for XNNPACK"):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        graph = torch.export.export(model, (torch.randn(2, *example_shape),),
                                    dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for batch in calibration:
                prepared(batch.float())
        return convert_pt2e(prepared)


def lower(model: nn.Module, example_shape: Sequence[int], batch_size: int) -> Any:
    """``torch.export`` at a fixed batch size and ``to_edge_transform_and_lower`` with the XNNPACK partitioner."""
    with failing_as(f"torch.export + XNNPACK lowering (batch {batch_size})"):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        program = torch.export.export(model, (torch.randn(batch_size, *example_shape),))
        return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])


def partition_report(edge: Any) -> dict[str, Any]:
    """How much of the graph XNNPACK took: ``partitions`` (delegate calls), ``delegated_ops`` (ops inside them)
    and ``undelegated_ops`` (``{op: count}`` left to the portable CPU kernels)."""
    gm = edge.exported_program().graph_module
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    delegated = 0
    for n in calls:
        if _op_name(n) == _DELEGATE:
            lowered = getattr(gm, n.args[0].target)
            inner = lowered.original_module.graph_module.graph.nodes
            delegated += sum(1 for m in inner if m.op == "call_function" and _op_name(m) != "getitem")
    left = Counter(_op_name(n) for n in calls if _op_name(n) not in (_DELEGATE, "getitem"))
    return {"partitions": sum(_op_name(n) == _DELEGATE for n in calls), "delegated_ops": delegated,
            "undelegated_ops": dict(left)}


def xnnpack_partitions(model: nn.Module, example_shape: Sequence[int], attention: str = "bmm",
                       batch_size: int = 1) -> dict[str, Any]:
    """The fp32 :func:`partition_report` of ``model`` with its attention as is (``"sdpa"``) or rewritten
    (``"bmm"``), without writing a file: the before/after number for the notebook."""
    return partition_report(lower(export_friendly(model, attention), example_shape, batch_size))


def executorch_threads(threads: int | None = None) -> int:
    """The XNNPACK threadpool size of the ExecuTorch runtime (process-wide); with ``threads``, reset it first.

    Only call with ``threads`` while no ExecuTorch program is running (the reset is "unsafe" otherwise).
    """
    with quiet():
        from executorch.extension.pybindings import portable_lib

        if threads is not None and threads != portable_lib._threadpool_get_thread_count():
            portable_lib._unsafe_reset_threadpool(int(threads))
        return int(portable_lib._threadpool_get_thread_count())


class ExecuTorchRunner(Runner):
    """The ``.pte`` programs (one per batch size) run by the ExecuTorch runtime's Python bindings.

    ``__call__`` needs a batch size that was built; ``predict`` pads other sizes up to a built one. ``size_bytes``
    is one program (the largest: what a device ships for its one input shape); ``info["total_bytes"]`` all of them.
    """

    def __init__(self, folder: Path, files: dict[int, Path], precision: str, info: dict[str, Any] | None = None):
        sizes = {bs: folder_size(p) for bs, p in files.items()}
        super().__init__("executorch", precision, folder, max(sizes.values()), info)
        self.info.update(total_bytes=sum(sizes.values()), programs=len(sizes))
        self.files = dict(sorted(files.items()))
        self.methods: dict[int, Any] = {}
        self._programs: list[Any] = []  # a method needs its program alive
        with failing_as(f"loading {folder.name} in the ExecuTorch runtime"):  # XNNPACK's first init prints
            from executorch.runtime import Runtime

            runtime = Runtime.get()
            for bs, path in self.files.items():  # from bytes: the runner never depends on the folder again
                self._programs.append(runtime.load_program(path.read_bytes()))
                self.methods[bs] = self._programs[-1].load_method("forward")
        self.info["threads"] = executorch_threads()
        self.fixed_batch_sizes = tuple(self.methods)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(self.methods)

    def settings(self) -> dict[str, Any]:
        """``threads``: the size of ExecuTorch's XNNPACK threadpool now (process-wide, shared by every program;
        set it with :func:`executorch_threads`)."""
        return {"threads": executorch_threads()}

    def _run_torch(self, x: torch.Tensor) -> torch.Tensor:
        return self.methods[len(x)].execute([x.float().contiguous()])[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) not in self.methods:
            raise ValueError(f"no .pte was built for batch size {len(x)} (built: {list(self.methods)}); "
                             f"deploy with batch_sizes=... or use predict(), which pads")
        return self._run_torch(x)


def build_executorch(model: nn.Module, precision: str, example_shape: Sequence[int], folder: Path,
                     calibration: Sequence[torch.Tensor] | None,
                     batch_sizes: Sequence[int]) -> tuple[dict[int, Path], dict[str, Any]]:
    """Lower ``model`` (export-ready copy) for every batch size and write ``model_b{bs}.pte`` files in ``folder``.

    The info holds the :func:`partition_report` of the first program and what the build cost: ``seconds_quantize``
    (PT2E, int8 only) and ``seconds_lower`` (``{batch size: seconds}`` for export + lowering + serialization)."""
    info: dict[str, Any] = {}
    if precision == "int8":
        start = time.perf_counter()
        model = quantize_pt2e(model, example_shape, calibration or [])
        info["seconds_quantize"] = round(time.perf_counter() - start, 1)
    files, lowered = {}, {}
    for bs in batch_sizes:
        start = time.perf_counter()
        edge = lower(model, example_shape, bs)
        if "partitions" not in info:
            info.update(partition_report(edge))
        with failing_as(f"ExecuTorch serialization (batch {bs})"):
            program = edge.to_executorch()
            path = folder / f"model_b{bs}.pte"
            path.write_bytes(program.buffer)
        files[bs] = path
        lowered[str(bs)] = round(time.perf_counter() - start, 1)
    info["seconds_lower"] = lowered
    return files, info


def _build(ready: nn.Module, precision: str, shape: Sequence[int], folder: Path,
           batches: Sequence[torch.Tensor] | None, sizes: Sequence[int], threads: int) -> tuple[dict[str, str], dict]:
    programs, info = build_executorch(ready, precision, shape, folder, batches, sizes)
    return {str(bs): p.name for bs, p in programs.items()}, info


def _load(folder: Path, files: dict[str, str], precision: str, sizes: Sequence[int], threads: int,
          info: dict[str, Any]) -> ExecuTorchRunner:
    return ExecuTorchRunner(folder, {int(bs): folder / f for bs, f in files.items()}, precision, info)


# XNNPACK cannot take SDPA (about 10 partitions instead of 2): attention as 3-D bmm. One .pte per batch size; an
# int8 lowering is most of a minute here, so deploy_many starts these first.
register_runtime(EdgeRuntime("executorch", ("fp32", "int8"), calibrated=("int8",), attention="bmm",
                             libraries=("executorch", "torchao"), export_seconds={"int8": 55, "fp32": 15},
                             loggers=("executorch",), order=4, per_batch_size=True, build=_build, load=_load))
