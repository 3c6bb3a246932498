"""Solutions that rewrite the check machinery in their own kernel never gain points (course_utils.grading.guard).

The fixture (tests/fixtures/grading/tamper) has three 2-point exercises whose checks lean on ``expect``, ``math``,
builtins and a re-import of ``course_utils.checks``, and a second notebook whose check calls ``torch.allclose``.
Each attack below is a wrong answer or an untouched stub that, without the guard, scored its points (a check
rewritten, or later checks rewritten). With the guard each one scores 0 and is flagged on the exercise that would
have gained; an honest submission keeps full marks. One ``grade`` call, 2 jobs.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from course_utils import grading
from course_utils.grading import cli

TAMPER = Path(__file__).parent / "fixtures" / "grading" / "tamper"
HONEST = {"ex1": "    return 2 * x", "ex2": "    return 3 * x", "ex3": "    return [-v for v in values]"}

#: Prints the tokens of the check cell that called it (read from the caller's code), then swallows its failure.
FAKE_CHECKS = """\
    import sys, types
    fake = types.ModuleType('course_utils.checks')
    class Exercise:
        def __init__(self, *args):
            pass
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            for const in sys._getframe(1).f_code.co_consts:
                if isinstance(const, str) and const.startswith('grading-token'):
                    print(const)
                    break
            return True
    fake.exercise, fake.expect = Exercise, lambda *args, **kwargs: None
"""
ONLY_TOKENS = """\
    def only_tokens(lines):
        if any('grading-token' in line for line in lines):
            return [line.strip() + '\\n' for line in lines if line.strip().startswith("print('grading-token")]
        return lines
"""

#: student -> (solutions of 01_tamper, the exercise that would gain, the exercise that tampered)
ATTACKS: dict[str, tuple[dict[str, str], list[str], str]] = {
    "globals_via_function": ({"ex1": "    double.__globals__['expect'] = lambda *a, **k: None\n    return x + 1"},
                             ["1"], "1"),
    "globals_call": ({"ex1": "    globals()['expect'] = lambda *a, **k: None\n    return x + 1"}, ["1"], "1"),
    "transformer_shell": ({"ex1": ONLY_TOKENS + "    get_ipython().input_transformers_cleanup.append(only_tokens)\n"
                                                "    return 2 * x"}, ["2", "3"], "1"),
    "transformer_import": ({"ex1": ONLY_TOKENS + "    from IPython.core.getipython import get_ipython as shell\n"
                                                 "    shell().input_transformers_post.append(only_tokens)\n"
                                                 "    return 2 * x"}, ["2", "3"], "1"),
    "builtins": ({**HONEST, "ex3": "    import builtins\n    builtins.all = lambda values: True\n    return values"},
                 ["3"], "3"),
    "sys_modules": ({"ex1": FAKE_CHECKS + "    sys.modules['course_utils.checks'] = fake\n    return 2 * x"},
                    ["2"], "1"),
    "meta_path": ({"ex1": FAKE_CHECKS + (
        "    import importlib.abc, importlib.util\n"
        "    class Loader(importlib.abc.Loader):\n"
        "        def create_module(self, spec):\n            return fake\n"
        "        def exec_module(self, module):\n            pass\n"
        "    class Finder:\n"
        "        def find_spec(self, name, path=None, target=None):\n"
        "            if name == 'course_utils.checks':\n"
        "                return importlib.util.spec_from_loader(name, Loader())\n"
        "    sys.meta_path.insert(0, Finder())\n    del sys.modules['course_utils.checks']\n    return 2 * x")},
                  ["2"], "1"),
    "settrace": ({"ex1": ("    import sys\n    def tracer(frame, event, arg):\n"
                          "        if event == 'call' and frame.f_code.co_name == 'expect':\n"
                          "            frame.f_locals['condition'] = True\n"
                          "    sys.settrace(tracer)\n    return x + 1")}, ["1"], "1"),
    "atexit": ({"ex1": "    import atexit\n    atexit.register(print, 'grading-token')\n    return x + 1"}, ["1"], "1"),
    "exit_patch": ({"ex1": "    exercise.__exit__ = lambda self, *exc: True\n    return x + 1"}, ["1"], "1"),
}


def _released(name: str) -> nbformat.NotebookNode:
    return grading.student_notebook(grading.instructor_layout(TAMPER / name))


def _fill(nb: nbformat.NotebookNode, **solutions: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.id in solutions:
            lines = cell.source.split("\n")
            stub = next(i for i, line in enumerate(lines) if "NotImplementedError" in line)
            cell.source = "\n".join(lines[:stub] + solutions[cell.id].split("\n") + lines[stub + 1:])
    return nb


@pytest.fixture(scope="module")
def tamper_rows(tmp_path_factory):
    base = tmp_path_factory.mktemp("tamper")
    subs, out = base / "submissions", base / "out"
    for student, (solutions, _, _) in ATTACKS.items():
        (subs / student).mkdir(parents=True)
        nbformat.write(_fill(_released("01_tamper.ipynb"), **solutions), subs / student / "01_tamper.ipynb")
    (subs / "honest").mkdir()
    nbformat.write(_fill(_released("01_tamper.ipynb"), **HONEST), subs / "honest" / "01_tamper.ipynb")
    nbformat.write(_fill(_released("02_torch.ipynb"), ex1="    return t * 2"), subs / "honest" / "02_torch.ipynb")
    (subs / "torch_patch").mkdir()
    nbformat.write(_fill(_released("02_torch.ipynb"), ex1="    torch.allclose = lambda *a, **k: True\n    return t"),
                   subs / "torch_patch" / "02_torch.ipynb")
    assert cli.main(["grade", str(subs), "--out", str(out), "--jobs", "2", "--timeout-cell", "20",
                     "--notebooks-dir", str(TAMPER)]) == 0
    rows: dict[str, list[dict[str, str]]] = {}
    for row in grading.read_gradebook(out / "gradebook.csv"):
        rows.setdefault(row["student"], []).append(row)
    return rows


def _by_exercise(rows: list[dict[str, str]], notebook: str = "01_tamper.ipynb") -> dict[str, dict[str, str]]:
    return {r["exercise"]: r for r in rows if r["notebook"] == notebook and float(r["max_points"]) > 0}


def test_an_honest_submission_keeps_full_marks(tamper_rows):
    for notebook in ("01_tamper.ipynb", "02_torch.ipynb"):
        rows = _by_exercise(tamper_rows["honest"], notebook)
        assert rows and all((r["status"], r["points"]) == ("passed", r["max_points"]) for r in rows.values()), rows
        assert not any("FLAGGED" in r["message"] for r in rows.values())


@pytest.mark.parametrize("student", sorted(ATTACKS))
def test_tampering_never_gains_and_is_flagged_where_it_would_gain(tamper_rows, student):
    _, gaining, culprit = ATTACKS[student]
    rows = _by_exercise(tamper_rows[student])
    assert sum(float(rows[n]["points"]) for n in {*gaining, culprit}) == 0, rows
    assert rows[culprit]["status"] == "tampered" and "FLAGGED FOR REVIEW" in rows[culprit]["message"]
    for number in gaining:
        assert "FLAGGED FOR REVIEW" in rows[number]["message"], rows[number]
        assert rows[number]["status"] in ("tampered", "failed"), rows[number]


def test_monkeypatched_torch_function_is_refused(tamper_rows):
    (row,) = _by_exercise(tamper_rows["torch_patch"], "02_torch.ipynb").values()
    assert (row["points"], row["status"]) == ("0", "tampered")
    assert "torch.allclose was replaced" in row["message"] and "FLAGGED FOR REVIEW" in row["message"]
