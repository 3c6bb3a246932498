"""Atomic file writes and early checks of output folders.

A crash or an error never leaves a half-written checkpoint or results file: the data goes to a temporary file
beside the target, which then replaces it in one step (readers see the old file or the new one, never a mix).
``ensure_writable_dir`` lets long jobs check where they will write *before* minutes of work, not after.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .paths import check_path, display_path


class OutputPathError(OSError):
    """A place the course must write to is unusable; the message names the path and the reason."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _blocking_file(p: Path) -> Path | None:
    """The first existing ancestor of ``p`` (or ``p`` itself) that is not a folder."""
    for q in (p, *p.parents):
        if q.exists():
            return None if q.is_dir() else q
    return None


def ensure_writable_dir(directory: os.PathLike | str, what: str = "folder") -> Path:
    """Create ``directory`` if needed and check that files can be created in it; raises ``OutputPathError``
    naming ``what`` and the path otherwise. Returns the folder as a ``Path``."""
    p = check_path("directory", directory).expanduser()
    if not isinstance(what, str):
        raise ValueError(f"what={what!r} is not valid; it must be a str naming the folder in messages")
    shown = display_path(p)
    blocker = _blocking_file(p)
    if blocker == p:
        raise OutputPathError(f"{what} {shown} is a file, not a folder")
    if blocker is not None:
        raise OutputPathError(f"{what} {shown} cannot be created: {display_path(blocker)} is a file")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{what} {shown} cannot be created ({_reason(e)})") from e
    try:  # os.access is not enough: it ignores read-only mounts and says yes to root
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputPathError(f"{what} {shown} is not writable ({_reason(e)})") from e
    return p


def ensure_writable_file(path: os.PathLike | str, what: str = "file") -> Path:
    """Check that ``path`` can be (re)written atomically: not a folder, its folder creatable and writable."""
    p = check_path("path", path).expanduser()
    if p.is_dir():
        raise OutputPathError(f"{what} {display_path(p)} is a folder, not a file; remove it or choose another path")
    ensure_writable_dir(p.parent, f"folder of the {what}")
    return p


@contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = check_path("path", path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {display_path(path)}: it is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputPathError(f"cannot write {display_path(path)} ({_reason(e)})") from e
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise OutputPathError(f"cannot write {display_path(path)} ({_reason(e)})") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj: Any, path: os.PathLike | str) -> Path:
    """``torch.save`` to ``path`` atomically; returns the path."""
    import torch  # imported here so that the results store (and its writer processes) never load torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def atomic_write_text(text: str, path: os.PathLike | str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, not {type(text).__name__}")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
