"""The grading worker: one process per submission, started by :mod:`.runner` (``python -m ...worker``).

It reads its request (the rebuilt notebook's cells, limits, what to hide) from stdin, so the notebook with the tokens
and hidden tests never touches a disk the kernel could read. It then hides the folders it was told to, makes a
fresh working folder, starts one kernel there (as an unprivileged user when it can), runs the cells one by one
and reports each start and end as a JSON line on its original stdout, which the grader watches to enforce time
limits from outside. The kernel's own stdout/stderr go to a log file, never to that channel.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 1, 2, 4, 8, 32, 4096, 8192, 16384
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
PR_SET_DUMPABLE = 4
TAIL = 4096


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if _libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def _bind(source: str, target: str, writable: bool = False) -> None:
    """Bind ``source`` (with what is mounted inside it) on ``target``, read-only unless ``writable``."""
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if writable else MS_RDONLY)
    try:
        _mount(None, target, None, flags | MS_NODEV)
    except PermissionError:  # a source mounted nodev/noexec... keeps those flags; read-only is what matters
        _mount(None, target, None, flags | MS_NODEV | MS_NOEXEC)


def _enter(new_root: str) -> None:
    """Make ``new_root`` this process's ``/`` and drop the old root from the mount namespace altogether."""
    os.chdir(new_root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    libc = _libc()
    if number is not None and libc.syscall(number, b".", b".") == 0:  # old root stacked on the new: detach it
        if libc.umount2(b".", MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"umount old root: {os.strerror(err)}")
    else:  # "/" not a mount point (some containers): move the new root over it, as switch_root does
        _mount(new_root, "/", None, MS_MOVE)
        os.chroot(".")
    os.chdir("/")


def build_root(plan: dict[str, Any]) -> list[str]:
    """Build the box's root file system from the plan's allow-list (see :func:`.sandbox.mount_plan`) on a tmpfs and
    move into it; returns what the box contains (for the report)."""
    sources = {src: os.open(src, os.O_PATH | os.O_DIRECTORY) for src, _ in plan["keep"]}  # even if in /tmp
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=700,size=1m")  # private: the host's /tmp untouched
    new = "/tmp/root"
    os.mkdir(new, 0o755)
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=4m")
    inside = lambda path: os.path.join(new, path.lstrip("/"))  # noqa: E731
    for folder in plan["system"]:
        if os.path.islink(folder):
            os.symlink(os.readlink(folder), inside(folder))
        elif os.path.isdir(folder):
            os.makedirs(inside(folder), exist_ok=True)
            _bind(folder, inside(folder))
    os.makedirs(inside("/proc"))
    _mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this pid namespace's processes
    os.makedirs(inside("/sys"))
    try:
        _mount("sysfs", inside("/sys"), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # only hardware facts (CPU counts) live there; libraries fall back to /proc
    dev = inside("/dev")
    os.makedirs(dev)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    for name in plan["devices"]:
        open(os.path.join(dev, name), "w").close()
        _mount(f"/dev/{name}", os.path.join(dev, name), None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        os.symlink(link, os.path.join(dev, name))
    for folder in plan["scratch"]:  # before the kept folders: a Python in /tmp goes on top
        os.makedirs(inside(folder), exist_ok=True)
        _mount("tmpfs", inside(folder), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=1g")
    for source, target in plan["keep"]:
        os.makedirs(inside(target), exist_ok=True)
        _bind(f"/proc/self/fd/{sources[source]}", inside(target))
    for fd in sources.values():
        os.close(fd)
    _enter(new)
    for folder, flags in (("/dev", MS_NOEXEC), ("/", MS_NODEV)):  # only the scratch folders writable from now on
        _mount(None, folder, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | flags)
    return sorted({*plan["system"], *(t for _, t in plan["keep"]), "/proc", "/sys", "/dev", *plan["scratch"]})


def isolate(plan: dict[str, Any]) -> list[str]:
    """Replace the scratch folders with private tmpfs mounts, cover the hidden folders with empty read-only tmpfs
    mounts and mount the kept folders back read-only; returns what was hidden (for the report)."""
    keep_fds = {k: os.open(k, os.O_PATH | os.O_DIRECTORY) for k in plan["keep"] if os.path.isdir(k)}
    for folder in plan["scratch"]:
        if os.path.isdir(folder) and not os.path.islink(folder):
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=1g")
    hidden = []
    for folder in plan["hide"]:
        if os.path.isdir(folder) and not os.path.islink(folder):
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=16m")
            hidden.append(folder)
    for folder, fd in keep_fds.items():
        os.makedirs(folder, exist_ok=True)
        _bind(f"/proc/self/fd/{fd}", folder)
        os.close(fd)
    for folder in plan["hide"]:  # read-only from now on: nothing written there can outlive the box anyway
        if folder in hidden:
            _mount(None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=755,size=16m")
    return hidden


def limit(limits: dict[str, int], user: list[int] | None) -> None:
    """Resource limits, inherited by the kernel: address space, file size, open files, no core dumps."""
    pairs = [(resource.RLIMIT_AS, limits.get("memory_bytes")), (resource.RLIMIT_FSIZE, limits.get("file_bytes")),
             (resource.RLIMIT_NOFILE, limits.get("open_files")), (resource.RLIMIT_CORE, 0)]
    if user is not None:  # per-user count: only meaningful for the unprivileged user the kernel becomes
        pairs.append((resource.RLIMIT_NPROC, limits.get("processes")))
    for which, value in pairs:
        if value is not None:
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))


def _dropper(connection_file: str, user: list[int] | None) -> Callable[[], None]:
    """A Popen ``preexec_fn``: in the kernel's process, before exec, hand the kernel its connection folder (written
    by this root process with mode 0600), then become ``user`` for good."""
    def drop() -> None:
        if user is None:
            return
        uid, gid = user
        os.chown(os.path.dirname(connection_file), uid, gid)
        os.chown(connection_file, uid, gid)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return drop


class _Reporter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: str, **data: Any) -> None:
        self.stream.write(json.dumps({"event": event, **data}) + "\n")
        self.stream.flush()


class Cell:
    """One cell's outputs (nbformat 4 dicts) as they arrive, capped, with the tail of what it printed on stdout."""

    def __init__(self, max_output: int) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.size, self.max_output, self.tail, self.count = 0, max_output, "", None

    def add(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "clear_output":
            self.outputs.clear()
            return
        if kind == "stream" and content.get("name") == "stdout":
            self.tail = (self.tail + content.get("text", ""))[-TAIL:]
        if kind != "error":  # a flood cannot exhaust the worker's memory; an error always gets through
            self.size += len(json.dumps(content))
            if self.size > self.max_output:
                return
        if kind == "stream":
            last = self.outputs[-1] if self.outputs else {}
            if last.get("output_type") == "stream" and last.get("name") == content.get("name"):
                last["text"] += content.get("text", "")
            else:
                self.outputs.append({"output_type": "stream", "name": content.get("name", "stdout"),
                                     "text": content.get("text", "")})
        elif kind in ("display_data", "execute_result"):
            out = {"output_type": kind, "data": content.get("data", {}), "metadata": content.get("metadata", {})}
            if kind == "execute_result":
                out["execution_count"] = content.get("execution_count")
            self.outputs.append(out)
        elif kind == "error":
            self.outputs.append({"output_type": "error", "ename": content.get("ename", ""),
                                 "evalue": content.get("evalue", ""), "traceback": content.get("traceback", [])})

    def last_lines(self) -> list[str]:
        return [x.strip() for x in self.tail.split("\n") if x.strip()][-3:]


def execute_cell(km: Any, kc: Any, source: str, cell: Cell) -> dict[str, Any] | None:
    """Run one cell; its reply's content, or ``None`` if the kernel died. No time limit here: the grader enforces
    those from outside by killing this process."""
    msg_id = kc.execute(source, store_history=True, allow_stdin=False, stop_on_error=False)
    reply: dict[str, Any] | None = None
    idle, replied_at = False, 0.0
    while not (idle and reply is not None):
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            msg = None
        if msg is not None and msg.get("parent_header", {}).get("msg_id") == msg_id:
            kind = msg["msg_type"]
            if kind == "status":
                idle = msg["content"].get("execution_state") == "idle"
            else:
                cell.add(kind, msg["content"])
        if reply is None:
            try:
                answer = kc.get_shell_msg(timeout=0.01)
            except queue.Empty:
                answer = None
            if answer is not None and answer.get("parent_header", {}).get("msg_id") == msg_id:
                reply, replied_at = answer["content"], time.monotonic()
                cell.count = reply.get("execution_count")
        elif not idle and time.monotonic() - replied_at > 10:
            break  # replied but never went idle: keep what arrived
        if msg is None and not km.is_alive():
            return None
    return reply


def run(request: dict[str, Any], workdir: str, report: _Reporter) -> None:
    """Execute the request's cells one by one in a fresh kernel, reporting as it goes."""
    from ..kernels import kernel_manager
    from .guard import KEY_ENV
    from .sandbox import kernel_environment

    user = request.get("user")
    env = kernel_environment(workdir)
    if request.get("guard_key"):  # read and deleted by the guard in the kernel's first cell, before any student code
        key_file = os.path.join(workdir, ".guard-key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes.fromhex(request["guard_key"]))
        if user is not None:
            os.chown(key_file, *user)
        env[KEY_ENV] = key_file
    for key in ("TMPDIR", "IPYTHONDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME", "JUPYTER_RUNTIME_DIR"):
        os.makedirs(env[key], exist_ok=True)
        if user is not None:
            os.chown(env[key], *user)
    cells: list[Cell] = []
    with open(os.path.join(workdir, "kernel.log"), "ab") as log, kernel_manager(request.get("kernel_name",
                                                                                            "python3")) as km:
        km.start_kernel(cwd=workdir, env=env, stdout=log, stderr=log, preexec_fn=_dropper(km.connection_file, user))
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=request.get("startup", 120))
        report("ready", kernel_pid=getattr(km.provisioner, "pid", None))
        for index, source in enumerate(request["cells"]):
            report("start", cell=index)
            started, cell = time.monotonic(), Cell(request["max_output"])
            cells.append(cell)
            reply = execute_cell(km, kc, source, cell)
            if reply is None:
                report("dead", cell=index)
                return
            report("done", cell=index, status=reply.get("status", "error"), ename=reply.get("ename", ""),
                   evalue=str(reply.get("evalue", ""))[:2000], last=cell.last_lines(),
                   seconds=round(time.monotonic() - started, 3))
        report("finished", cells=[{"outputs": c.outputs, "execution_count": c.count} for c in cells])


def main() -> int:
    """Entry point: request on stdin, events on stdout; everything else to stderr or the kernel log."""
    request = json.loads(sys.stdin.buffer.read())
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    report = _Reporter(channel)
    try:
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the kernel must not read this process's memory
        mounts = request.get("mounts") or {}
        hidden = ["/ (all but the allow-list: " + ", ".join(build_root(mounts["root"])) + ")"] if "root" in mounts \
            else isolate(mounts) if mounts else []
        if request.get("mounts"):  # temporary files (the kernel's connection folder) in the private /tmp
            os.environ["TMPDIR"] = "/tmp"
            tempfile.tempdir = None
        workdir = request.get("workdir") or "/tmp/grading"
        Path(workdir).mkdir(parents=True, exist_ok=True)
        if request.get("user") is not None:
            os.chown(workdir, *request["user"])
        os.chdir(workdir)
        limit(request.get("limits", {}), request.get("user"))
        report("sandbox", hidden=hidden, workdir=workdir)
        run(request, workdir, report)
    except Exception as e:  # noqa: BLE001 - reported to the grader, which decides
        report("fatal", message=f"{type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
