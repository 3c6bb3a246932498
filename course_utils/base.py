"""The bottom of the package: what every other module may use and what imports nothing else of the course.

Threads: how many cores this process may use, and a block that runs on one thread (the same numbers wherever a job
runs). Everything above (the lessons, the zoo, the parallel runner, the checkpoints) builds on these.
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
