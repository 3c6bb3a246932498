"""Grading: student versions of the notebooks."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_utils import grading


def _notebook(path, *sources):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_strip_solutions_keeps_indentation_and_rest():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\nprint(f)"
    out = grading.strip_solutions(src)
    assert "return x + 1" not in out and "    raise NotImplementedError()" in out and out.endswith("print(f)")
    with pytest.raises(ValueError, match="unbalanced"):
        grading.strip_solutions("### BEGIN SOLUTION\nx = 1")


def test_student_version_clears_outputs(tmp_path):
    _notebook(tmp_path / "01_x.ipynb", "a = 1", "def g():\n    ### BEGIN SOLUTION\n    return 2\n    ### END SOLUTION")
    assert grading.student_version(tmp_path / "01_x.ipynb", tmp_path / "s" / "01_x.ipynb") == 1
    nb = nbformat.read(tmp_path / "s" / "01_x.ipynb", as_version=4)
    assert "NotImplementedError" in nb.cells[1].source and all(not c.outputs for c in nb.cells)
