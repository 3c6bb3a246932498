"""``deploy(model, runtime, precision)``: one call from a PyTorch model to a checked, timed-ready runner.

Every export starts from the same export-ready copy (pruning masks folded, attention as 3-D bmm + softmax), so a
dense, pruned, structurally pruned, distilled or low-rank model takes the same path. The artifact is written into
a temporary folder that replaces ``<workdir>/<model tag>-<runtime>-<precision>`` only once complete, with a
``manifest.json`` naming what it was built from, so a later call with the same model and settings loads it instead
of exporting again. :func:`deploy_many` exports several models side by side in worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..storage import atomic_dir
from . import runtimes  # noqa: F401 - importing the package registers every runtime
from .attention import export_friendly
from .common import (
    calibration_batches,
    check_batch_sizes,
    check_example_shape,
    default_workdir,
    model_tag,
)
from .machine import library_versions
from .parity import DeploymentMismatchError, Tolerance, check_parity
from .registry import registered
from .registry import runtime as get_runtime
from .runners import Runner

#: Every runtime and the precisions it offers, from the registry (``pytorch`` and ``torch_compile`` are PyTorch's own
#: references, in process); a new runtime registers itself in its own module (see :mod:`.registry`).
RUNTIMES: dict[str, tuple[str, ...]] = {r.name: r.precisions for r in registered()}
#: (runtime, precision) pairs that set activation ranges from real images and so need ``calibration``.
NEEDS_CALIBRATION = {(r.name, p) for r in registered() for p in r.calibrated}
#: How each exported runtime gets attention by default (its registered form).
AUTO_ATTENTION = {r.name: r.attention for r in registered() if r.attention}
#: Every deployment target, in the order tables show them.
TARGETS: tuple[tuple[str, str], ...] = tuple((r, p) for r, ps in RUNTIMES.items() for p in ps)


def check_target(runtime: str, precision: str) -> None:
    """ValueError naming the allowed runtimes, or the precisions this runtime allows."""
    if precision not in get_runtime(runtime).precisions:
        raise ValueError(f"precision={precision!r} is not valid for runtime {runtime!r}; "
                         f"choose one of {list(get_runtime(runtime).precisions)}")


#: Bump when the artifact layout changes: older folders are then rebuilt, never misread.
ARTIFACT_FORMAT = 2  # 2: ExecuTorch manifests record seconds_quantize / seconds_lower
MANIFEST = "manifest.json"


def _versions(runtime: str) -> dict[str, str]:
    """The library versions an artifact depends on (a different version rebuilds it)."""
    return {"torch": torch.__version__, **library_versions(get_runtime(runtime).libraries)}


def _key(ready: nn.Module, runtime: str, precision: str, shape: tuple[int, int, int],
         batches: list[torch.Tensor] | None, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Everything an artifact is built from; an existing folder with the same key is reused."""
    calib = None
    if precision in get_runtime(runtime).calibrated and batches:
        calib = hashlib.sha1(torch.cat(batches).numpy().tobytes()).hexdigest()[:16]
    return {"format": ARTIFACT_FORMAT, "model": model_tag(ready), "runtime": runtime, "precision": precision,
            "example_shape": list(shape), "batch_sizes": list(sizes) if get_runtime(runtime).per_batch_size else None,
            "calibration": calib, "versions": _versions(runtime)}


def _cached(folder: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of ``folder`` if it was built from ``key`` and its files are all there."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("key") != json.loads(json.dumps(key)):
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all((folder / f).is_file() for f in files.values()):
        return None
    return manifest


def _write(ready: nn.Module, runtime: str, precision: str, shape: tuple[int, int, int], folder: Path,
           batches: list[torch.Tensor] | None, sizes: tuple[int, ...], threads: int, reuse: bool) -> dict[str, Any]:
    """The artifact's manifest: the existing one when ``reuse`` and the key matches, else a new build written
    atomically into ``folder`` (files, then the manifest, then the swap)."""
    key = _key(ready, runtime, precision, shape, batches, sizes)
    if reuse and (manifest := _cached(folder, key)) is not None:
        return manifest
    with atomic_dir(folder) as tmp:
        files, info = get_runtime(runtime).build(ready, precision, shape, tmp, batches, sizes, threads)
        manifest = {"key": key, "files": files, "info": json.loads(json.dumps(info, default=str))}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _load(folder: Path, manifest: dict[str, Any], runtime: str, precision: str, sizes: tuple[int, ...],
          threads: int) -> Runner:
    """The runner of a built artifact, loaded with its runtime."""
    files, info = manifest["files"], dict(manifest["info"])
    return get_runtime(runtime).load(folder, files, precision, sizes, threads, info)


def _prepare(model: nn.Module, runtime: str, precision: str, calibration: Any, example_shape: Sequence[int] | None,
             batch_sizes: int | Iterable[int], workdir: os.PathLike | str | None, name: str | None, attention: str,
             threads: int | None) -> dict[str, Any]:
    """Check every argument of :func:`deploy` (before any export starts) and resolve the defaults."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    check_target(runtime, precision)
    rt = get_runtime(runtime)
    if precision in rt.calibrated and calibration is None:
        others = " or ".join(repr(p) for p in rt.precisions if p not in rt.calibrated)
        raise ValueError(f"{runtime} {precision} needs calibration=... (real images): static int8 sets its "
                         f"activation ranges from them; or choose precision={others}")
    batches = calibration_batches(calibration) if calibration is not None else None
    shape = check_example_shape(model, example_shape, batches)
    sizes = check_batch_sizes(batch_sizes)
    if attention not in ("auto", "bmm", "sdpa"):
        raise ValueError(f"attention={attention!r} is not valid; choose 'auto', 'bmm' or 'sdpa'")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} is not valid; it must be an integer >= 1")
    out: dict[str, Any] = {"model": model.cpu().eval(), "batches": batches, "shape": shape, "sizes": sizes,
                           "threads": threads or torch.get_num_threads()}
    if not rt.in_process:
        out["attention"] = rt.attention if attention == "auto" else attention
        out["ready"] = export_friendly(model, out["attention"])
        folder = Path(workdir) if workdir is not None else default_workdir()
        out["folder"] = folder / f"{name or model_tag(model)}-{runtime}-{precision}"
    return out


def deploy(model: nn.Module, runtime: str, precision: str = "fp32", *, calibration: Any = None,
           example_shape: Sequence[int] | None = None, batch_sizes: int | Iterable[int] = (1, 64),
           workdir: os.PathLike | str | None = None, name: str | None = None, attention: str = "auto",
           verify: Any = None, tolerance: Tolerance | None = None, threads: int | None = None,
           compile_backend: str = "inductor", reuse: bool = True) -> Runner:
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
    - ``reuse``: an artifact folder built from the same weights, settings, calibration images and library versions
      (its ``manifest.json`` says) is loaded instead of exported again: an ExecuTorch int8 lowering is the slowest
      export (its runner's ``info["seconds_quantize"]`` and ``info["seconds_lower"]`` say how slow, as measured when
      it was built). ``reuse=False`` always exports.

    ``model`` itself is put in eval mode on the CPU; everything exported is a copy.
    """
    if not isinstance(reuse, bool):
        raise ValueError(f"reuse={reuse!r} is not valid; it must be True or False")
    p = _prepare(model, runtime, precision, calibration, example_shape, batch_sizes, workdir, name, attention, threads)
    model, batches, shape, sizes, threads = p["model"], p["batches"], p["shape"], p["sizes"], p["threads"]
    rt = get_runtime(runtime)
    if rt.in_process:
        runner = rt.make(model, precision, shape, sizes, batches, compile_backend)
    else:
        folder = p["folder"]
        manifest = _write(p["ready"], runtime, precision, shape, folder, batches, sizes, threads, reuse)
        runner = _load(folder, manifest, runtime, precision, sizes, threads)
        runner.info.setdefault("attention", p["attention"])

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


def build_artifact(model: nn.Module, runtime: str, precision: str = "fp32", *, calibration: Any = None,
                   example_shape: Sequence[int] | None = None, batch_sizes: int | Iterable[int] = (1, 64),
                   workdir: os.PathLike | str | None = None, name: str | None = None, attention: str = "auto",
                   reuse: bool = True, **_: Any) -> Path | None:
    """Only the export step of :func:`deploy` (same arguments): write the artifact folder, load nothing, return it
    (``None`` for the eager runtimes, which have none). What :func:`deploy_many` runs in worker processes."""
    p = _prepare(model, runtime, precision, calibration, example_shape, batch_sizes, workdir, name, attention, 1)
    if "folder" not in p:
        return None
    _write(p["ready"], runtime, precision, p["shape"], p["folder"], p["batches"], p["sizes"], 1, reuse)
    return p["folder"]


def _export_seconds(job: dict[str, Any]) -> float:
    """The registered rough export cost (ViT-small, batch sizes 1 and 64; unlisted ones take 2-5 s): deploy_many
    starts the longest first, so that no core ends up alone on a late ExecuTorch lowering."""
    return get_runtime(job["runtime"]).export_seconds.get(job.get("precision", "fp32"), 1)


def deploy_many(jobs: Sequence[dict[str, Any]], workers: int = 0, desc: str = "exports",
                progress: bool = True) -> list[Runner]:
    """``[deploy(**job) for job in jobs]``, with the exports done first by ``workers`` processes side by side
    (``parallel.run``; 0 = one per core), the longest (ExecuTorch) first. Exporting is single-threaded Python graph
    work (an ExecuTorch int8 lowering is most of a minute here), so two cores build two artifacts at once; loading,
    the parity checks and everything timed later happen here."""
    from .. import parallel

    if isinstance(jobs, dict) or not all(isinstance(j, dict) for j in jobs):
        raise ValueError("jobs must be a list of dicts of deploy() arguments, e.g. "
                         "[{'model': m, 'runtime': 'openvino', 'precision': 'int8', 'calibration': x}]")
    for j in jobs:
        if not {"model", "runtime"} <= set(j):
            raise ValueError(f"every job needs 'model' and 'runtime'; got keys {sorted(j)}")
        check_target(j["runtime"], j.get("precision", "fp32"))
    todo = [j for j in jobs if not get_runtime(j["runtime"]).in_process]
    todo.sort(key=lambda j: -_export_seconds(j))  # longest first
    exports = [parallel.call(build_artifact, label=f"{j.get('name') or 'model'} {j['runtime']} "
                                                   f"{j.get('precision', 'fp32')}", **j) for j in todo]
    parallel.run(exports, workers=workers, desc=desc, progress=progress)
    return [deploy(**j) for j in jobs]


def deploy_all(model: nn.Module, targets: Iterable[tuple[str, str]] = TARGETS, **kwargs: Any) -> dict[str, Runner]:
    """:func:`deploy` to each ``(runtime, precision)`` in ``targets``; keys are the runners' names, e.g.
    ``"openvino_int8"`` (same keyword arguments as :func:`deploy`; ready for ``metrics.benchmark``)."""
    targets = list(targets)
    for runtime, precision in targets:
        check_target(runtime, precision)
        if precision in get_runtime(runtime).calibrated and kwargs.get("calibration") is None:
            raise ValueError(f"{runtime} {precision} is among the targets but calibration=None; give real images")
    out: dict[str, Runner] = {}
    for runtime, precision in targets:
        runner = deploy(model, runtime, precision, **kwargs)
        out[runner.name] = runner
    return out
