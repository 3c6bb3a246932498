"""``deploy(model, runtime, precision)``: one call from a PyTorch model to a checked, timed-ready runner.

Every export starts from the same export-ready copy (pruning masks folded, attention as 3-D bmm + softmax), so a
dense, pruned, structurally pruned, distilled or low-rank model takes the same path. The artifact is written into
a temporary folder that replaces ``<workdir>/<model tag>-<runtime>-<precision>`` only once complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .attention import export_friendly
from .common import (
    atomic_dir,
    calibration_batches,
    check_batch_sizes,
    check_example_shape,
    default_workdir,
    model_tag,
)
from .parity import DeploymentMismatchError, Tolerance, check_parity
from .runners import Runner, compiled_runner, eager_runner

#: Every runtime and the precisions it offers (``pytorch`` and ``torch_compile`` are the eager references).
RUNTIMES: dict[str, tuple[str, ...]] = {
    "pytorch": ("fp32", "int8_dynamic"),
    "torch_compile": ("fp32",),
    "onnxruntime": ("fp32", "int8_dynamic", "int8_static"),
    "openvino": ("fp32", "int8"),
    "executorch": ("fp32", "int8"),
}
#: (runtime, precision) pairs that set activation ranges from real images and so need ``calibration``.
NEEDS_CALIBRATION = {("onnxruntime", "int8_static"), ("openvino", "int8"), ("executorch", "int8")}
#: How each runtime gets attention by default: OpenVINO has a native SDPA op (and a smaller IR with it); ONNX
#: Runtime and XNNPACK get the 3-D bmm rewrite (XNNPACK cannot take SDPA: ~10 partitions instead of 2).
AUTO_ATTENTION = {"onnxruntime": "bmm", "openvino": "sdpa", "executorch": "bmm"}
#: Every deployment target, in the order tables show them.
TARGETS: tuple[tuple[str, str], ...] = tuple((r, p) for r, ps in RUNTIMES.items() for p in ps)


def check_target(runtime: str, precision: str) -> None:
    """ValueError naming the allowed runtimes, or the precisions this runtime allows."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not valid; choose one of {list(RUNTIMES)}")
    if precision not in RUNTIMES[runtime]:
        raise ValueError(f"precision={precision!r} is not valid for runtime {runtime!r}; "
                         f"choose one of {list(RUNTIMES[runtime])}")


def _build(ready: nn.Module, runtime: str, precision: str, shape: tuple[int, int, int], folder: Path,
           batches: list[torch.Tensor] | None, sizes: tuple[int, ...], threads: int) -> Runner:
    """Write the artifact atomically into ``folder`` and load it with its runtime."""
    with atomic_dir(folder) as tmp:
        if runtime == "onnxruntime":
            from .onnx_runtime import build_onnxruntime

            path, info = build_onnxruntime(ready, precision, shape, tmp, batches, threads)
        elif runtime == "openvino":
            from .openvino_nncf import build_openvino

            path, info = build_openvino(ready, precision, shape, tmp, batches)
        else:
            from .executorch_xnnpack import build_executorch

            files, info = build_executorch(ready, precision, shape, tmp, batches, sizes)
    if runtime == "onnxruntime":
        from .onnx_runtime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(folder / path.name, precision, threads, info)
    if runtime == "openvino":
        from .openvino_nncf import OpenVinoRunner

        return OpenVinoRunner(folder / path.name, precision, threads, sizes, info)
    from .executorch_xnnpack import ExecuTorchRunner

    return ExecuTorchRunner(folder, {bs: folder / p.name for bs, p in files.items()}, precision, info)


def deploy(model: nn.Module, runtime: str, precision: str = "fp32", *, calibration: Any = None,
           example_shape: Sequence[int] | None = None, batch_sizes: int | Iterable[int] = (1, 64),
           workdir: os.PathLike | str | None = None, name: str | None = None, attention: str = "auto",
           verify: Any = None, tolerance: Tolerance | None = None, threads: int | None = None,
           compile_backend: str = "inductor") -> Runner:
    """Export ``model`` to ``runtime`` at ``precision`` and return a checked :class:`Runner`.

    - ``runtime``/``precision``: see :data:`RUNTIMES`. Static int8 (see :data:`NEEDS_CALIBRATION`) needs
      ``calibration``: real images as a tensor ``(N, C, H, W)``, a DataLoader or ``(images, labels)`` batches
      (at most 256 images are used).
    - ``example_shape``: ``(C, H, W)``; taken from the calibration images or the model when not given.
    - ``batch_sizes``: ExecuTorch builds one ``.pte`` per batch size, OpenVINO compiles a static copy for each,
      torch.compile is checked at each.
    - ``workdir``: default ``checkpoint_dir() / "deploy"``; ``name`` the artifact folder's prefix (default: the
      model's class and a hash of its weights).
    - ``attention``: ``"bmm"`` rewrites attention as 3-D bmm + softmax, ``"sdpa"`` exports it as is, ``"auto"``
      picks per runtime (:data:`AUTO_ATTENTION`).
    - ``verify``: data for the parity check (default: the calibration images, else random images for fp32).
      A deployment outside ``tolerance`` (default per precision) raises ``DeploymentMismatchError``.
    - ``threads``: intra-op threads of ONNX Runtime and OpenVINO (default: ``torch.get_num_threads()``, as eager;
      ExecuTorch's XNNPACK threadpool is process-wide: set it with ``executorch_threads(n)``).

    ``model`` itself is put in eval mode on the CPU; everything exported is a copy.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    check_target(runtime, precision)
    if (runtime, precision) in NEEDS_CALIBRATION and calibration is None:
        raise ValueError(f"{runtime} {precision} needs calibration=... (real images): static int8 sets its "
                         f"activation ranges from them; or choose precision='fp32'"
                         + (" or 'int8_dynamic'" if runtime == "onnxruntime" else ""))
    batches = calibration_batches(calibration) if calibration is not None else None
    shape = check_example_shape(model, example_shape, batches)
    sizes = check_batch_sizes(batch_sizes)
    if attention not in ("auto", "bmm", "sdpa"):
        raise ValueError(f"attention={attention!r} is not valid; choose 'auto', 'bmm' or 'sdpa'")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} is not valid; it must be an integer >= 1")
    threads = threads or torch.get_num_threads()
    model = model.cpu().eval()

    if runtime == "pytorch":
        runner = eager_runner(model, precision)
    elif runtime == "torch_compile":
        runner = compiled_runner(model, shape, sizes, backend=compile_backend)
    else:
        attention = AUTO_ATTENTION[runtime] if attention == "auto" else attention
        ready = export_friendly(model, attention)
        folder = Path(workdir) if workdir is not None else default_workdir()
        folder = folder / f"{name or model_tag(model)}-{runtime}-{precision}"
        runner = _build(ready, runtime, precision, shape, folder, batches, sizes, threads)
        runner.info.setdefault("attention", attention)

    data = verify if verify is not None else batches
    if data is None and precision == "fp32":
        data = torch.randn(8, *shape, generator=torch.Generator().manual_seed(0))
    if data is not None:
        try:
            check_parity(runner, model, data, tolerance=tolerance)
        except DeploymentMismatchError:
            if runner.path is not None:  # every artifact left in the work folder passed its check
                shutil.rmtree(runner.path if runner.path.is_dir() else runner.path.parent, ignore_errors=True)
            raise
    return runner


def deploy_all(model: nn.Module, targets: Iterable[tuple[str, str]] = TARGETS, **kwargs: Any) -> dict[str, Runner]:
    """:func:`deploy` to each ``(runtime, precision)`` in ``targets``; keys are the runners' names, e.g.
    ``"openvino_int8"`` (same keyword arguments as :func:`deploy`; ready for ``metrics.benchmark``)."""
    targets = list(targets)
    for runtime, precision in targets:
        check_target(runtime, precision)
        if (runtime, precision) in NEEDS_CALIBRATION and kwargs.get("calibration") is None:
            raise ValueError(f"{runtime} {precision} is among the targets but calibration=None; give real images")
    out: dict[str, Runner] = {}
    for runtime, precision in targets:
        runner = deploy(model, runtime, precision, **kwargs)
        out[runner.name] = runner
    return out
