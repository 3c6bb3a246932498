"""The bottom of the package: what every other module may use and what imports nothing else of the course.

Threads (how many cores this process may use; a block that runs on one thread, so the same numbers come out
wherever a job runs), the device rules of every training, and whether to draw progress bars. Everything above (the
lessons, the zoo, the parallel runner, the checkpoints) builds on these.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def cpu_count() -> int:
    """Cores this process may use (the scheduler's affinity, which containers and ``taskset`` restrict;
    ``os.cpu_count()`` where the scheduler has no affinity call)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one intra-op thread (restored afterwards): the same numbers wherever a job runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; a named device must exist on this machine."""
    if isinstance(device, torch.device):
        return device
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if not isinstance(device, str) or not (device in ("cpu", "cuda", "mps") or device.startswith("cuda:")):
        raise ValueError(f"device={device!r} is not valid; choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} is not available: this machine has no CUDA GPU "
                         "(torch.cuda.is_available() is False); use 'auto' or 'cpu'")
    if device == "mps" and not mps:
        raise ValueError("device='mps' is not available on this machine; use 'auto' or 'cpu'")
    return torch.device(device)


def show_progress(progress: bool = True) -> bool:
    """Whether to draw tqdm bars: ``progress`` unless the environment sets ``TQDM_DISABLE=1`` (batch runs)."""
    return progress and os.environ.get("TQDM_DISABLE", "0") in ("", "0")
