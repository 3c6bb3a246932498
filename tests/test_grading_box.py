"""The grading box is built from an allow-list: a second copy of the instructor's notebooks anywhere else on the
machine (here a "second checkout" under /srv, /opt or /var/lib, which no deny-list of the repository, home folders
and the grading run's own folders covers) is invisible to the kernel, while an honest submission still scores full
marks. Needs root and a mount namespace (``grading.probe()``), like the box it tests."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import nbformat
import pytest
from test_grading import CORRECT, FULL, _fill  # the fixture notebook's solutions and its filler

from course_utils import grading
from course_utils.grading import cli

INSTRUCTOR = Path(__file__).parent / "fixtures" / "grading" / "instructor"


@pytest.fixture
def second_checkout():
    """A copy of the instructor's notebooks outside the repository, /tmp, /var/tmp and the home folders."""
    for parent in (Path("/srv"), Path("/opt"), Path("/var/lib")):
        if parent.is_dir():
            folder = parent / f"course-second-checkout-{uuid.uuid4().hex[:8]}"
            try:
                (folder / "notebooks").mkdir(parents=True)
            except OSError:
                continue
            break
    else:
        pytest.skip("no writable /srv, /opt or /var/lib for the second checkout")
    shutil.copy(INSTRUCTOR / "01_fixture.ipynb", folder / "notebooks" / "01_fixture.ipynb")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_second_checkout_of_the_instructor_notebooks_is_not_readable(tmp_path, second_checkout):
    box = grading.probe()
    if not (box.mounts and box.user):
        pytest.skip(f"needs root and a mount namespace ({'; '.join(box.warnings) or box.describe()})")
    copy_path = second_checkout / "notebooks" / "01_fixture.ipynb"
    assert "sum(values) / len(values)" in copy_path.read_text()  # the grader's user can read it
    released = grading.student_notebook(grading.instructor_layout(INSTRUCTOR / "01_fixture.ipynb"))
    peek = (
        "    import os\n"
        f"    for path in ({str(copy_path)!r}, {str(second_checkout)!r}):\n"
        "        print(path, 'visible' if os.path.exists(path) else 'absent')\n"
        "    try:\n"
        f"        text = open({str(copy_path)!r}).read()\n"
        "    except OSError as e:\n"
        "        print('cannot read:', type(e).__name__)\n"
        "        return 0\n"
        "    if 'sum(values) / len(values)' in text:\n"
        "        return sum(values) / len(values)\n"
        "    return 0")
    subs = tmp_path / "subs"
    students = {"honest": _fill(released, **CORRECT), "peeker": _fill(released, **{**CORRECT, "ex2": peek})}
    for name, nb in students.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(nb, subs / name / "01_fixture.ipynb")
    out = tmp_path / "out"
    assert cli.main(["grade", str(subs), "--out", str(out), "--jobs", "2", "--timeout-cell", "30",
                     "--notebooks-dir", str(INSTRUCTOR)]) == 0
    rows: dict[str, dict[str, tuple[str, str]]] = {}
    for row in grading.read_gradebook(out / "gradebook.csv"):
        if row["notebook"] == "01_fixture.ipynb" and row["status"] != "tampered":
            rows.setdefault(row["student"], {})[row["exercise"]] = (row["points"], row["status"])
    assert rows["honest"] == FULL
    assert rows["peeker"] == {**FULL, "2": ("0", "failed")}, "the kernel read the second checkout"
    executed = nbformat.read(out / "executed" / "peeker" / "01_fixture.ipynb", 4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"{copy_path} absent" in printed and f"{second_checkout} absent" in printed, printed
    assert "cannot read: FileNotFoundError" in printed and " visible" not in printed
