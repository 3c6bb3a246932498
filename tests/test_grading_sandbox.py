"""Operator errors and the grader's own environment: never turned into student scores, never left running.

* every argument is checked before the first kernel starts (``--out`` a file, ``--memory-gb 0``);
* a grading kernel that cannot import the course package stops the grader (exit 1, one line), no gradebook;
* SIGTERM to the grader ends every kernel's process group, exits 143 and writes nothing.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_utils import grading
from course_utils.grading import cli, core
from course_utils.grading.sandbox import BOX_UID
from course_utils.paths import REPO_ROOT

INSTRUCTOR = Path(__file__).parent / "fixtures" / "grading" / "instructor"


def _submission(folder: Path, ex1: str) -> Path:
    nb = copy.deepcopy(grading.student_notebook(grading.instructor_layout(INSTRUCTOR / "01_fixture.ipynb")))
    for cell in nb.cells:
        if cell.id == "ex1":
            cell.source = "\n".join(ex1 if "NotImplementedError" in line else line for line in cell.source.split("\n"))
    (folder / "alice").mkdir(parents=True)
    nbformat.write(nb, folder / "alice" / "01_fixture.ipynb")
    return folder


@pytest.mark.parametrize("extra, needle", [
    (["--memory-gb", "0"], "memory_gb=0.0 is not valid; it must be a number of gigabytes > 0"),
    (["--out", "FILE"], "is a file, not a folder"),
])
def test_bad_arguments_stop_before_any_kernel(tmp_path, capsys, monkeypatch, extra, needle):
    subs = _submission(tmp_path / "subs", "    return x * x")
    (tmp_path / "file").write_text("not a folder")
    started = []
    monkeypatch.setattr(core, "execute", lambda *a, **k: started.append(1))
    argv = ["grade", str(subs), "--out", str(tmp_path / "out"), "--notebooks-dir", str(INSTRUCTOR)]
    argv += [str(tmp_path / "file") if x == "FILE" else x for x in extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().split("\n")
    assert len(err) == 1 and needle in err[0] and started == []


def test_a_kernel_without_the_course_package_is_an_operator_error(tmp_path, capsys, monkeypatch):
    subs = _submission(tmp_path / "subs", "    return x * x")
    monkeypatch.setattr(core, "GUARD_CELL", "import course_utils_is_not_installed_here")
    out = tmp_path / "out"
    assert cli.main(["grade", str(subs), "--out", str(out), "--notebooks-dir", str(INSTRUCTOR),
                     "--timeout-cell", "20"]) == 1
    err = capsys.readouterr().err.strip().split("\n")
    assert len(err) == 1 and err[0].startswith("grader error:") and "environment is broken" in err[0]
    assert "course_utils_is_not_installed_here" in err[0] and not (out / "gradebook.csv").exists()


def test_preflight_names_a_python_without_the_package(monkeypatch):
    from course_utils.grading import api, sandbox

    env = sandbox.kernel_environment

    def broken(workdir, extra=None):
        return {**env(workdir, extra), "PYTHONPATH": "", "PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1",
                "PYTHONHOME": "/nonexistent"}
    monkeypatch.setattr(sandbox, "kernel_environment", broken)
    with pytest.raises(grading.GraderError, match="grading kernel's Python"):
        api.preflight()


def _box_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid >= BOX_UID:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_sigterm_kills_every_kernel_and_writes_nothing(tmp_path):
    if not grading.probe().user:
        pytest.skip("needs root: the boxed kernels run as their own uid, which is how this test finds them")
    subs = _submission(tmp_path / "subs", "    while True:\n        pass")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "course_utils.grading", "grade", str(subs), "--out", str(out),
                             "--notebooks-dir", str(INSTRUCTOR), "--timeout-cell", "120"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 150  # the pre-flight check and the kernel start are slow on a busy machine
    while not _box_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _box_processes(), "no kernel started"
    time.sleep(3)  # the kernel is now spinning in the student's loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    deadline = time.monotonic() + 5
    while _box_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _box_processes() == []
    assert not (out / "gradebook.csv").exists() and not list(out.glob("**/*.md"))
