"""What every runtime needs: argument checks, calibration batches, a quiet block, atomic artifact folders.

Exporters and quantizers are chatty (tracer warnings, progress bars, log lines); :func:`quiet` hides that chatter
for one block only, and keeps it so an export that fails can say what the library printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..paths import checkpoint_dir

#: Loggers that print during export/quantization, besides each registered runtime's own; raised to ERROR inside
#: :func:`quiet` only.
NOISY_LOGGERS = ("torch", "torch.export", "root")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes some exporters put in their messages
#: Images taken from the calibration data unless told otherwise (NNCF's default subset is 300).
CALIBRATION_IMAGES = 256


class DeploymentMismatchError(ValueError):
    """A deployed model disagrees with its PyTorch model beyond the stated tolerance."""


class DeploymentError(ValueError):
    """An export, a quantization or a runtime load failed; the message says which and why."""


def default_workdir() -> Path:
    """Where artifacts go unless told: ``checkpoint_dir() / "deploy"`` (moves with ``COURSE_CHECKPOINT_DIR``)."""
    return checkpoint_dir() / "deploy"


@contextlib.contextmanager
def native_output_to(sink: io.StringIO) -> Iterator[None]:
    """Send C/C++ writes to file descriptors 1 and 2 (e.g. ExecuTorch's cpuinfo probing) into ``sink``."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real descriptors (some notebook frontends): nothing to redirect
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            sink.write(tmp.read().decode(errors="replace"))


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Hide warnings, prints (Python and native) and noisy loggers for this block only; yields the captured text."""
    buf = io.StringIO()
    from .registry import runtime_loggers

    levels = {name: logging.getLogger(name if name != "root" else None).level
              for name in (*NOISY_LOGGERS, *runtime_loggers())}
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), \
            native_output_to(buf), _no_live_widgets():
        warnings.simplefilter("ignore")
        for name in levels:
            logging.getLogger(name if name != "root" else None).setLevel(logging.ERROR)
        try:
            yield buf
        finally:
            for name, level in levels.items():
                logging.getLogger(name if name != "root" else None).setLevel(level)


@contextlib.contextmanager
def _no_live_widgets() -> Iterator[None]:
    """NNCF draws its progress with ``rich``, which inside Jupyter becomes a widget the redirections above cannot
    catch (an ``Output()`` left in the notebook). For this block, ``rich`` believes it writes to a terminal."""
    try:
        import rich.console as rc
    except ImportError:
        yield
        return
    saved = rc._is_jupyter
    rc._is_jupyter = lambda: False
    try:
        yield
    finally:
        rc._is_jupyter = saved


@contextlib.contextmanager
def failing_as(what: str) -> Iterator[io.StringIO]:
    """Run a library step quietly; any exception becomes a :class:`DeploymentError` naming ``what`` failed."""
    with quiet() as log:
        try:
            yield log
        except DeploymentError:
            raise
        except Exception as e:  # every library error is reported the same way
            tail = _ANSI.sub("", log.getvalue()).strip().splitlines()[-5:]
            extra = ("\nlast lines it printed:\n  " + "\n  ".join(tail)) if tail else ""
            raise DeploymentError(f"{what} failed: {type(e).__name__}: {_ANSI.sub('', str(e))[:800]}{extra}") from e


def folder_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (an artifact may be several files)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def model_tag(model: nn.Module) -> str:
    """``<class>-<8 hex digits>`` from the module tree and weights, so two models never share a folder."""
    h = hashlib.sha1(repr(model).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes() if v.dtype != torch.bfloat16 else b"bf16")
    return f"{type(model).__name__.lower()}-{h.hexdigest()[:8]}"


def check_example_shape(model: nn.Module, example_shape: Sequence[int] | None,
                        batches: Sequence[torch.Tensor] | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` from the argument, else from the calibration images, else from the model's attributes."""
    if example_shape is None and batches:
        example_shape = tuple(batches[0].shape[1:])
    if example_shape is None and hasattr(model, "img_size") and hasattr(model, "in_chans"):
        example_shape = (model.in_chans, model.img_size, model.img_size)
    if example_shape is None:
        raise ValueError("example_shape=None: give the input shape (C, H, W), e.g. example_shape=(1, 28, 28)")
    shape = tuple(example_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"example_shape={example_shape!r} is not valid; give (C, H, W) as three integers >= 1")
    return shape  # type: ignore[return-value]


def check_batch_sizes(batch_sizes: int | Iterable[int]) -> tuple[int, ...]:
    """Sorted distinct batch sizes (each an integer >= 1)."""
    sizes = (batch_sizes,) if isinstance(batch_sizes, int) else tuple(batch_sizes)
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in sizes):
        raise ValueError(f"batch_sizes={batch_sizes!r} is not valid; give integers >= 1, e.g. (1, 64)")
    return tuple(sorted(set(sizes)))


def _images(item: Any) -> torch.Tensor:
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(item)
    if not isinstance(item, torch.Tensor):
        raise ValueError(f"calibration data must hold image tensors (or (images, labels) pairs), "
                         f"got {type(item).__name__}")
    return item


def calibration_batches(data: Any, limit: int = CALIBRATION_IMAGES, batch_size: int = 32) -> list[torch.Tensor]:
    """At most ``limit`` real images as float32 batches of ``batch_size``, from a tensor ``(N, C, H, W)``, a
    DataLoader or any iterable of image batches or ``(images, labels)`` pairs."""
    if data is None:
        raise ValueError("calibration data is missing")
    items = [data] if isinstance(data, (torch.Tensor, np.ndarray)) else data
    xs, n = [], 0
    for item in items:
        x = _images(item)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise ValueError(f"calibration images must be (N, C, H, W); got shape {tuple(x.shape)}")
        xs.append(x.detach().float().cpu())
        n += len(x)
        if n >= limit:
            break
    if not xs or n == 0:
        raise ValueError("calibration data is empty: give at least one real image batch")
    x = torch.cat(xs)[:limit].contiguous()
    return list(x.split(batch_size))


def as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A contiguous float32 numpy view (no copy when ``x`` already is one)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)
