"""Fixtures of the real-browser check (``make browser``): a JupyterLab server serving a trimmed copy of notebook 02,
and Debian's headless Chromium driven by Playwright. Both are ended on success, failure and timeout."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from jupyter_browser import (
    ARTIFACT_FILES,
    ARTIFACTS,
    TIMEOUT,
    JupyterLab,
    Problem,
    Stopped,
    Watchdog,
    descendants_since,
    end_processes,
    launch_chromium,
    marked_processes,
    slider_notebook,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: the real-browser check (JupyterLab + headless Chromium)")


@pytest.fixture
def browser_run():
    """``(lab, page, budget)``: JupyterLab serving ``slider.ipynb`` (smoke mode, outputs in a temporary folder) and
    a Chromium page. A SIGTERM (CI's timeout) becomes an exception here so that the clean-up below runs."""
    from playwright.sync_api import sync_playwright

    started = time.time()
    for name in ARTIFACT_FILES:  # a failure's files are from this run, not an earlier one
        (ARTIFACTS / name).unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="course-browser-"))
    profile = tmp / "chromium-profile"
    lab = pw = context = None

    def end_all():  # from the watchdog's thread: no Playwright calls, only signals
        end_processes(marked_processes(str(profile)), grace=2)
        if lab is not None:
            lab.stop()
        end_processes(descendants_since(started), grace=2)

    def on_sigterm(signum, frame):
        raise Stopped(f"the browser check got signal {signum} ({signal.Signals(signum).name}) and stopped; "
                      "JupyterLab and Chromium are being ended")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with Watchdog(TIMEOUT, end_all) as budget:
            root = tmp / "lab"
            slider_notebook(root / "slider.ipynb")
            env = {"COURSE_SMOKE": "1", "COURSE_CHECKPOINT_DIR": str(tmp / "checkpoints"),
                   "COURSE_FIGURES_DIR": str(tmp / "figures"), "COURSE_RESULTS_PATH": str(tmp / "results.json"),
                   "TQDM_DISABLE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
            lab = JupyterLab(root, env, log=tmp / "jupyterlab.log")
            lab.start(timeout=60)
            pw = sync_playwright().start()
            context = launch_chromium(pw, profile)
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            yield lab, page, budget
    finally:
        for close in (context and context.close, pw and pw.stop):
            try:
                if close:
                    close()
            except Exception:  # noqa: BLE001 - the browser or the driver may already be gone (watchdog, crash)
                pass
        left = end_processes(marked_processes(str(profile)), grace=2) + (lab.stop() if lab is not None else [])
        left += end_processes(descendants_since(started), grace=2)
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
        if left:
            raise Problem(f"processes of the browser check would not end: {', '.join(left)}")
