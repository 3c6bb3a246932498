"""Running one rebuilt notebook in a worker, with the time limits enforced from outside.

The worker reports when each cell starts and ends. If a cell outlives its limit, or the whole notebook its own,
the grader kills the worker's process group (and, in a pid namespace, everything in it) with SIGKILL: no cell can
outlast that, whatever it does with SIGINT. The notebook itself is handed over on the worker's stdin.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .sandbox import Sandbox, mount_plan, worker_environment


class GraderError(RuntimeError):
    """The grader itself cannot run (no kernel, broken worker): not the student's fault; the message says why."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. Setup cells only count against the notebook limit: they are the instructor's (imports)."""

    cell_seconds: float = 60.0
    notebook_seconds: float = 600.0
    memory_bytes: int = 6 << 30
    file_bytes: int = 64 << 20
    open_files: int = 1024
    processes: int = 256
    max_output: int = 1 << 20


@dataclass
class CellRecord:
    """How one cell ended, as the worker saw it."""

    status: str  # "ok" or "error"
    ename: str = ""
    evalue: str = ""
    last: list[str] = field(default_factory=list)  # the last (up to 3) non-empty lines the cell printed on stdout
    seconds: float = 0.0


@dataclass
class RunResult:
    """One run of a rebuilt notebook: each finished cell, and where and why the run stopped early if it did."""

    records: dict[int, CellRecord] = field(default_factory=dict)
    stopped_at: int | None = None  # the cell that was running when the run was cut short
    reason: str = ""  # "", "timeout", "dead", "fatal", "crashed"
    message: str = ""
    cells: list[dict[str, Any]] | None = None  # per cell: outputs and execution count (a finished run only)
    seconds: float = 0.0


_LOCK = threading.Lock()
_SLOTS: set[int] = set()  # uid slots of the boxes running now
_LIVE: set[subprocess.Popen] = set()


def _take_slot() -> int:
    with _LOCK:
        slot = next(i for i in range(len(_SLOTS) + 1) if i not in _SLOTS)
        _SLOTS.add(slot)
        return slot


_STOP = threading.Event()


def kill_all() -> None:
    """Kill every worker still running and start no more (the grader was interrupted or failed): no box outlives
    its grader. :func:`resume` allows new runs again."""
    _STOP.set()
    with _LOCK:
        live = list(_LIVE)
    for proc in live:
        _kill(proc, None)


def resume() -> None:
    _STOP.clear()


def _kill(proc: subprocess.Popen, kernel_pid: int | None) -> None:
    for pgid in (proc.pid, kernel_pid):
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _pump(stream: Any, sink: queue.Queue) -> None:
    for line in iter(stream.readline, b""):
        try:
            sink.put(json.loads(line))
        except ValueError:
            continue
    sink.put(None)


def _tail(stream: Any, keep: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(4096), b""):
        keep.append(chunk)
        while sum(map(len, keep)) > 16384:
            keep.pop(0)


def execute(cells: list[str], roles: list[str], limits: Limits, sandbox: Sandbox,
            hide: list[str], kernel_name: str = "python3", guard_key: str = "") -> RunResult:
    """Run the sources ``cells`` (whose ``roles`` are "setup", "exercise" or "check") in one sandboxed worker."""
    if _STOP.is_set():
        raise GraderError("grading was stopped")
    slot = _take_slot()
    user = [sandbox.user[0] + slot, sandbox.user[1]] if sandbox.user else None
    try:
        return _execute(cells, roles, limits, sandbox, hide, kernel_name, user, guard_key)
    finally:
        with _LOCK:
            _SLOTS.discard(slot)


def _execute(cells: list[str], roles: list[str], limits: Limits, sandbox: Sandbox, hide: list[str],
             kernel_name: str, user: list[int] | None, guard_key: str = "") -> RunResult:
    scratch = None if sandbox.mounts else tempfile.mkdtemp(prefix="course-grade-")
    request = {"cells": cells, "mounts": mount_plan(hide) if sandbox.mounts else None, "user": user,
               "workdir": scratch, "kernel_name": kernel_name, "guard_key": guard_key,
               "max_output": limits.max_output, "startup": min(120.0, limits.notebook_seconds),
               "limits": {"memory_bytes": limits.memory_bytes, "file_bytes": limits.file_bytes,
                          "open_files": limits.open_files, "processes": limits.processes}}
    command = [*sandbox.prefix, sys.executable, "-m", "course_utils.grading.worker"]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, cwd="/", env=worker_environment())
    except OSError as e:
        raise GraderError(f"cannot start the grading worker ({e})") from e
    with _LOCK:
        _LIVE.add(proc)
    events: queue.Queue = queue.Queue()
    errors: list[bytes] = []
    threads = [threading.Thread(target=_pump, args=(proc.stdout, events), daemon=True),
               threading.Thread(target=_tail, args=(proc.stderr, errors), daemon=True)]
    for t in threads:
        t.start()
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
    except OSError:
        pass  # the worker died at once; its stderr says why
    result, kernel_pid = RunResult(), None
    current: int | None = None
    cell_started = started
    try:
        while True:
            now = time.monotonic()
            cell_limit = limits.cell_seconds if current is not None and roles[current] != "setup" else float("inf")
            wait = min(cell_started + cell_limit, started + limits.notebook_seconds) - now
            if wait <= 0:
                per_cell = now - cell_started >= cell_limit
                seconds = cell_limit if per_cell else limits.notebook_seconds
                result.stopped_at, result.reason = current, "timeout"
                result.message = f"the {'cell' if per_cell else 'notebook'} time limit ({seconds:g} s) was exceeded"
                break
            try:
                event = events.get(timeout=min(wait, 1.0))
            except queue.Empty:
                continue
            if event is None:
                result.stopped_at, result.reason = current, "crashed"
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                result.message = f"the grading worker stopped (exit status {proc.returncode})"
                break
            kind = event.get("event")
            if kind == "ready":
                kernel_pid = None if sandbox.pid_namespace else event.get("kernel_pid")
            elif kind == "start":
                current, cell_started = int(event["cell"]), time.monotonic()
            elif kind == "done":
                result.records[int(event["cell"])] = CellRecord(event.get("status", "error"), event.get("ename", ""),
                                                                event.get("evalue", ""), list(event.get("last", [])),
                                                                float(event.get("seconds", 0)))
                current = None
            elif kind == "dead":
                result.stopped_at, result.reason = int(event["cell"]), "dead"
                result.message = "the kernel died (the process exited or was killed)"
                break
            elif kind == "fatal":
                result.stopped_at, result.reason, result.message = current, "fatal", event.get("message", "")
                break
            elif kind == "finished":
                result.cells = event.get("cells")
                break
    finally:
        _kill(proc, kernel_pid)
        with _LOCK:
            _LIVE.discard(proc)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for t in threads:
            t.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if result.reason in ("crashed", "fatal") and not result.message.strip():
        result.message = b"".join(errors).decode(errors="replace").strip().split("\n")[-1]
    if result.reason == "crashed":
        tail = b"".join(errors).decode(errors="replace").strip().split("\n")[-1:]
        result.message += f": {tail[0]}" if tail and tail[0] else ""
    result.seconds = time.monotonic() - started
    return result
