"""Helpers of the real-browser check: a trimmed notebook, a JupyterLab server on 127.0.0.1, headless Chromium.

Everything started here carries a marker so that it can be found and ended however the test ends: JupyterLab and
its kernels (which jupyter_client starts in sessions of their own) inherit ``COURSE_BROWSER_RUN=<random>`` in their
environment, and Chromium's processes carry their own new ``--user-data-dir`` on their command line.
"""

from __future__ import annotations

import ast
import builtins
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import nbformat
import psutil

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "02_pruning.ipynb"
#: Cells of notebook 02 that the slider needs in full; the statements of the cells between ``load`` and ``slider``
#: that assign what the slider cell uses (``trained``, ``w_all``) are picked out of them by :func:`slider_notebook`.
FULL_CELLS = ("parameters", "setup", "load")
SLIDER_CELL = "slider"
STATE_MARK = "KERNEL-STATE"
#: The last cell of the trimmed notebook: what the kernel holds, printed as one JSON line. JupyterLab 4.6 with
#: ipykernel 7 handles widget messages on a kernel subshell (its own thread), so a move's callback can still be
#: running (plotting; ``slider.result`` is set when it returns) while this cell runs on the main thread: the cell
#: waits until the result belongs to the slider's value (or 20 s) and says whether it settled.
STATE_CELL = f"""\
import json as _json
import time as _time
_slider, _t0 = slider.children[0], _time.monotonic()
while (slider.result or {{}}).get("tau") != _slider.value and _time.monotonic() - _t0 < 20:
    _time.sleep(0.05)
print("{STATE_MARK}", _json.dumps({{"value": _slider.value, "step": _slider.step, "min": _slider.min,
      "max": _slider.max, "result": slider.result, "plots": len(slider.children[-1].outputs),
      "settled": (slider.result or {{}}).get("tau") == _slider.value, "waited": _time.monotonic() - _t0}}))"""

#: Debian's chromium; the flags this machine needs (the sandbox needs a non-root user, the network is closed).
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
MARK_VAR = "COURSE_BROWSER_RUN"
#: The whole check, server start to comparison, must end within this many seconds (env COURSE_BROWSER_TIMEOUT).
TIMEOUT = float(os.environ.get("COURSE_BROWSER_TIMEOUT", "120"))
#: Where a failing run leaves its screenshot, page text and server log (env COURSE_BROWSER_ARTIFACTS).
ARTIFACTS = Path(os.environ.get("COURSE_BROWSER_ARTIFACTS", REPO / "runs" / "browser"))
ARTIFACT_FILES = ("failure.png", "failure-page.txt", "jupyterlab.log")


class Problem(AssertionError):
    """A failure of the browser check, with a message that says what went wrong."""


class Stopped(BaseException):
    """A signal (SIGTERM: CI's timeout) stopped the check. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way (ours, Playwright's) takes it for a failed wait: the clean-up runs and pytest
    reports it."""


# --------------------------------------------------------------------------------------------------------- notebook
def _bound(node: ast.AST) -> set[str]:
    """Names a statement binds (assignment targets, imports, defs, comprehension and loop variables)."""
    out = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for n in ast.walk(node):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
    return out


def _used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _code(source: str) -> ast.Module:
    # IPython magics are not Python: blank them before parsing (the cells we keep have none today)
    return ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()))


def slider_notebook(dest: Path, source: Path = NOTEBOOK) -> Path:
    """A copy of notebook 02 with only what the slider needs, outputs and saved widget state removed, and
    :data:`STATE_CELL` last. Fails with a clear message when the notebook no longer has what it looks for."""
    nb = nbformat.read(source, as_version=4)
    by_id = {c.get("id"): i for i, c in enumerate(nb.cells)}
    missing = [c for c in (*FULL_CELLS, SLIDER_CELL) if c not in by_id]
    if missing:
        raise Problem(f"{source.name} has no cell with id {', '.join(missing)}: the browser check "
                      f"(tests/browser/jupyter_browser.py, FULL_CELLS) needs them")
    kept = [nb.cells[by_id[c]].source for c in FULL_CELLS]
    defined = set(dir(builtins)) | {"display", "get_ipython"}
    for src in kept:
        defined |= _bound(_code(src))
    slider_src = nb.cells[by_id[SLIDER_CELL]].source
    needed = _used(_code(slider_src)) - _bound(_code(slider_src)) - defined
    # top-level statements of the cells between the last full cell and the slider that assign a needed name;
    # what those statements use in turn is needed too (to a fixed point)
    start = max(by_id[c] for c in FULL_CELLS) + 1
    candidates = [(i, j, stmt, src) for i in range(start, by_id[SLIDER_CELL]) if nb.cells[i].cell_type == "code"
                  for src in [nb.cells[i].source] for j, stmt in enumerate(_code(src).body)]
    picked: dict[tuple[int, int], str] = {}
    changed = True
    while changed:
        changed = False
        for i, j, stmt, src in candidates:
            if (i, j) in picked or not (_bound(stmt) & needed):
                continue
            picked[i, j] = ast.get_source_segment(src, stmt) or ""
            needed |= _used(stmt) - _bound(stmt) - defined
            changed = True
    assigned = set().union(*(_bound(_code(s)) for s in picked.values())) if picked else set()
    unresolved = needed - defined - assigned
    if unresolved:
        raise Problem(f"the slider cell of {source.name} uses {', '.join(sorted(unresolved))}, which neither the "
                      f"cells {', '.join(FULL_CELLS)} nor a top-level assignment before the slider define")
    glue = "\n".join(picked[k] for k in sorted(picked))
    parts = [*zip(FULL_CELLS, kept), ("picked-assignments", glue), (SLIDER_CELL, slider_src),
             ("kernel-state", STATE_CELL)]
    out = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src, id=cid) for cid, src in parts if src.strip()])
    out.metadata["kernelspec"] = dict(nb.metadata.get("kernelspec") or
                                      {"name": "python3", "display_name": "Python 3", "language": "python"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(out, dest)
    return dest


# -------------------------------------------------------------------------------------------------------- processes
def marked_processes(marker: str) -> list[psutil.Process]:
    """Our processes: those whose environment holds ``COURSE_BROWSER_RUN=marker`` or whose command line names
    ``marker`` (Chromium's profile folder). Never this process."""
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get(MARK_VAR) == marker or any(marker in a for a in p.cmdline()):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def descendants_since(start: float) -> list[psutil.Process]:
    """This process's descendants started at or after ``start`` (a time.time()): Playwright's driver, Chromium and
    its helpers, JupyterLab and, while the server lives, its kernels."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.create_time() >= start - 1:
                found.append(p)
        except psutil.Error:
            continue
    return found


def end_processes(procs: list[psutil.Process], grace: float = 5.0) -> list[str]:
    """SIGTERM, then SIGKILL what is left after ``grace`` seconds; what would not die, described."""
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=grace)
    return [f"{p.pid}" for p in alive]


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started it dies, even by SIGKILL (CI's hard
    timeout), so that JupyterLab, in a session of its own, still ends and shuts its kernel down."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------------- JupyterLab
class JupyterLab:
    """``jupyter lab --allow-root --no-browser --ip 127.0.0.1`` on a free port with a random token, serving
    ``root``; ``env`` is added to its environment (and so to the kernel's)."""

    def __init__(self, root: Path, env: dict[str, str], log: Path):
        self.root, self.log_path = root, log
        self.port, self.token, self.marker = free_port(), secrets.token_hex(16), secrets.token_hex(8)
        self.env = {**os.environ, **env, MARK_VAR: self.marker,
                    "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"),
                    "JUPYTERLAB_SETTINGS_DIR": str(root / ".lab-settings"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-workspaces")}
        self.proc: subprocess.Popen | None = None
        # no news or update check (the network is closed; no toast over the notebook)
        settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text('{"fetchNews": "false", "checkForUpdates": false}')

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def start(self, timeout: float) -> None:
        cmd = [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ip", "127.0.0.1",
               "--port", str(self.port), "--ServerApp.port_retries=0", f"--ServerApp.token={self.token}",
               "--notebook-dir", str(self.root)]
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + timeout
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no http_proxy for 127.0.0.1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Problem(f"jupyter lab exited with {self.proc.returncode} before it served:\n{self.log_tail()}")
            try:
                with direct.open(self.url("api/status"), timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise Problem(f"jupyter lab did not answer on {self.base} within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> list[str]:
        """End the server (SIGTERM: it shuts its kernels down), then anything still carrying our marker
        (kernels, their workers). What would not die, as pids."""
        left: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        left += end_processes(marked_processes(self.marker))
        if getattr(self, "log", None):
            self.log.close()
        return left


# --------------------------------------------------------------------------------------------------------- Chromium
def chromium_path() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if not path:
        raise Problem(f"no Chromium at {CHROMIUM}: `make setup` installs Debian's package (as root: apt-get install "
                      "-y --no-install-recommends chromium); or set CHROMIUM_PATH to a Chromium binary")
    return path


def launch_chromium(playwright, profile: Path, viewport: dict[str, int] | None = None):
    """Debian's Chromium, headless, driven by Playwright (no browser download): a persistent context in the new,
    empty folder ``profile`` so that its processes can be found by that name."""
    profile.mkdir(parents=True, exist_ok=False)
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=chromium_path(), headless=True, args=list(CHROMIUM_FLAGS),
        chromium_sandbox=False, viewport=viewport or {"width": 1400, "height": 1000}, timeout=60_000,
        handle_sigint=False, handle_sigterm=False, handle_sighup=False)


class Watchdog:
    """The check's time budget. The test's waits use :meth:`ms` (never past the deadline), so that a slow run fails
    in the page, with a screenshot. If something hangs anyway, ``on_timeout`` runs from a timer thread ``grace``
    seconds after the deadline: it ends the browser and the server, so that every wait fails at once."""

    def __init__(self, seconds: float, on_timeout: Callable[[], None], grace: float = 15.0):
        import threading

        self.seconds, self.fired = seconds, False
        self.deadline = time.monotonic() + seconds

        def fire():
            self.fired = True
            on_timeout()

        self.timer = threading.Timer(seconds + grace, fire)
        self.timer.daemon = True

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def ms(self, wanted_ms: float) -> float:
        """``wanted_ms``, or what is left of the budget if that is less (at least a second)."""
        return max(1_000.0, min(wanted_ms, self.left() * 1000))

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        return False
