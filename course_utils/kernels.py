"""Jupyter kernels for batch runs and grading, talking over IPC sockets instead of TCP.

A kernel normally listens on 127.0.0.1, which needs a loopback interface (absent in a network namespace made
with ``unshare -n``) and makes jupyter_client warn that it "runs over TCP without encryption". Unix-domain
sockets in a private folder need neither. On platforms without them (Windows) the default TCP transport is kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from jupyter_client.manager import KernelManager


def ipc_supported() -> bool:
    """Whether this platform can run a kernel over IPC (Unix-domain sockets)."""
    return os.name == "posix"


@contextmanager
def kernel_manager(kernel_name: str = "python3") -> Iterator[KernelManager]:
    """A not-yet-started ``KernelManager`` for ``kernel_name`` using IPC transport in a private temporary folder
    (TCP where IPC is unsupported); the folder is removed when the block ends."""
    if not ipc_supported():
        yield KernelManager(kernel_name=kernel_name)
        return
    folder = tempfile.mkdtemp(prefix="course-kernel-")
    try:
        km = KernelManager(kernel_name=kernel_name, transport="ipc")
        km.connection_file = os.path.join(folder, "kernel.json")
        km.ip = os.path.join(folder, "ipc")
        yield km
    finally:
        shutil.rmtree(folder, ignore_errors=True)
