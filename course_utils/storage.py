"""Atomic file writes and early checks of output folders.

A crash or an error never leaves a half-written checkpoint or results file: the data goes to a temporary file
beside the target, which then replaces it in one step (readers see the old file or the new one, never a mix).
``ensure_writable_dir`` lets long jobs check where they will write *before* minutes of work, not after.

A SIGTERM or SIGHUP that arrives while a temporary file exists (a scheduler, ``timeout`` or a closed terminal ending
the process) removes it before the process dies, so even a killed worker leaves no partial file. A ``torch.save``
that fails (a full disk raises ``RuntimeError``, not ``OSError``) becomes an ``OutputPathError`` saying why.

Ending a run (torch-free, so the batch runner uses it too): :func:`terminate_on_signals` makes SIGTERM and SIGHUP
raise :class:`Terminated`, a ``KeyboardInterrupt``, so a command cleans up as on Ctrl-C and exits with 128 + the
signal; :func:`end_processes` ends a process and everything it started.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .paths import check_path, display_path


class CheckpointNotSavedWarning(UserWarning):
    """Training finished but the checkpoint could not be written: the model is returned, later runs retrain."""


# Every lost checkpoint is reported, not only the first of each call site (Python's default for warnings).
warnings.filterwarnings("always", category=CheckpointNotSavedWarning)


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


#: Signals that end a process politely (a scheduler, ``timeout``, a closed terminal); SIGINT is Python's
#: ``KeyboardInterrupt``. While a temporary file exists they remove it first (see ``_guard``).
ENDING_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)
#: Temporary files of :func:`atomic_path` not yet moved into place, in this process.
_PARTIAL: set[str] = set()


def remove_partial_files() -> None:
    """Delete this process's unfinished temporary files (their targets are untouched)."""
    for tmp in list(_PARTIAL):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _PARTIAL.discard(tmp)


def _remove_partial_and_die(signum: int, frame: Any) -> None:
    """The default action of ``signum`` (the process ends), after removing the unfinished temporary files."""
    remove_partial_files()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _default_ending_signals() -> list[int]:
    """The ending signals whose action is still the default one, or none outside the main thread (only it can set
    handlers). A handler someone else installed is theirs: it is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return []
    return [s for s in ENDING_SIGNALS if signal.getsignal(s) == signal.SIG_DFL]


@contextmanager
def _handling(signals: list[int], handler: Any) -> Iterator[None]:
    """Within the block, ``handler`` answers ``signals``; the default action comes back afterwards."""
    for s in signals:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s in signals:
            signal.signal(s, signal.SIG_DFL)


@contextmanager
def _guard() -> Iterator[None]:
    """While the block runs, an ending signal whose action is the default one (the process dies without running
    ``finally`` blocks) first removes the temporary files; a handler someone else installed (the CLIs raise an
    exception, which runs ``finally``) is left alone."""
    with _handling(_default_ending_signals(), _remove_partial_and_die):
        yield


# ------------------------------------------------------------------------------ ending a run

class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: raised like Ctrl-C's ``KeyboardInterrupt`` so the same clean-up runs (every
    ``finally``, the workers ended); ``exit_status`` is the shell's code for the signal (143 for SIGTERM)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_status = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


_RECEIVED: list[int] = []


def ending_signal() -> int | None:
    """The ending signal this process received under :func:`terminate_on_signals`, if any (a worker that died of the
    same signal first then reads as a termination, not as a failure)."""
    return _RECEIVED[0] if _RECEIVED else None


def _raise_terminated(signum: int, frame: Any) -> None:
    _RECEIVED.append(signum)
    for s in ENDING_SIGNALS:  # a second signal must not interrupt the clean-up of the first
        if signal.getsignal(s) is _raise_terminated:
            signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


@contextmanager
def terminate_on_signals() -> Iterator[bool]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread instead of killing the
    process on the spot (which skips every ``finally`` and leaves the workers running). Yields whether the handlers
    were installed: only the main thread can, and only where the default action is in force (a handler someone
    else installed is theirs). The previous handlers come back afterwards."""
    mine = _default_ending_signals()
    if mine:
        _RECEIVED.clear()
    with _handling(mine, _raise_terminated):
        yield bool(mine)


def end_processes(pids: Sequence[int], grace: float = 5.0) -> list[int]:
    """End the processes ``pids`` and everything they started (their descendants, whatever process group or
    session those joined): SIGTERM first, so a worker removes its unfinished temporary files
    (``storage.atomic_path``), then SIGKILL for any still alive after ``grace`` seconds. Returns once all are dead, with
    the ids of those that needed SIGKILL. Dead children are left for their owner to reap: ``multiprocessing`` and
    ``subprocess`` must see their exit, or they take them for alive (and a process pool's shutdown spins forever)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with ipykernel and distributed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        return []
    procs = []
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            procs += [parent, *parent.children(recursive=True)]  # found before any dies and reparents its own
        except psutil.Error:
            continue

    def alive() -> list[Any]:
        out = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                continue
        return out

    killed: list[int] = []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        targets = alive()
        if not targets:
            break
        for p in targets:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        if sig == signal.SIGKILL:
            killed = [p.pid for p in targets]
        deadline = time.monotonic() + wait
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    return killed


# ------------------------------------------------------------------------------ atomic files

@contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds (an error, Ctrl-C or
    SIGTERM removes it)."""
    path = check_path("path", path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {display_path(path)}: it is a folder, not a file")
    with _guard():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise OutputPathError(f"cannot write {display_path(path)} ({_reason(e)})") from e
        _PARTIAL.add(tmp)
        try:
            os.close(fd)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
            yield Path(tmp)
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise OutputPathError(f"cannot write {display_path(path)} ({_reason(e)})") from e
        finally:
            _PARTIAL.discard(tmp)
            if os.path.exists(tmp):
                os.unlink(tmp)


@contextmanager
def atomic_dir(target: os.PathLike | str) -> Iterator[Path]:
    """A fresh temporary folder beside ``target`` that replaces ``target`` only if the block succeeds (the folder
    twin of :func:`atomic_path`): readers see the old complete folder or the new complete one, never a half-written
    one. An unwritable parent raises ``OutputPathError`` naming it."""
    target = check_path("target", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as e:
        raise OutputPathError(f"cannot write into {display_path(target.parent)} ({_reason(e)})") from e
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual permissions
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _payload_bytes(obj: Any) -> int:
    """The bytes of the tensors in ``obj`` (a dict of state dicts, lists...): about what ``torch.save`` writes."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_payload_bytes(v) for v in obj)
    return 0


def _save_failure(path: Path, obj: Any, e: BaseException) -> OutputPathError:
    """An ``OutputPathError`` saying why ``torch.save`` could not write ``path``: torch reports a full disk as
    "file write failed" (a ``RuntimeError`` without errno), so the free space is measured to name it."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    err = getattr(e, "errno", None)
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    measured = free is not None and free < max(_payload_bytes(obj), 1 << 20)
    said = err == errno.ENOSPC or "no space left" in first.lower()  # a quota, or space freed since
    full = measured or said
    why = f"the disk is full: {free / 2**20:.1f} MiB free" if measured else \
        "no space left on device" if said else first
    out = OutputPathError(f"cannot write {display_path(path)} ({why}; torch.save: {first})")
    out.errno = errno.ENOSPC if full else (err or errno.EIO)
    return out


def atomic_torch_save(obj: Any, path: os.PathLike | str) -> Path:
    """``torch.save`` to ``path`` atomically; returns the path. Any failure of the write (a full disk included, which
    torch raises as ``RuntimeError``) is an ``OutputPathError`` naming the path and the reason; no partial file
    remains."""
    import torch  # imported here so that the results store (and its writer processes) never load torch

    path = check_path("path", path)
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except OutputPathError:
            raise
        except (RuntimeError, OSError) as e:
            raise _save_failure(path, obj, e) from e
    return path


def atomic_write_text(text: str, path: os.PathLike | str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, not {type(text).__name__}")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
