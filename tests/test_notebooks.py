"""Every notebook of the series follows the lab conventions (fast static checks; nbval executes them)."""

import re

import nbformat
import pytest

from course_utils.grading import BEGIN, END, strip_solutions
from course_utils.running import discover

NOTEBOOKS = discover()
ABSOLUTE_PATH = re.compile(r"(?:/root|/home/[a-z]+|/tmp|/work|/Users/\w+)/[\w./-]+")


def test_the_series_is_there():
    assert [nb.name[:2] for nb in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def nb(request):
    return nbformat.read(request.param, as_version=4)


def test_parameters_cell_reads_environment(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    src = tagged[0].source
    for name in ("smoke", "dataset", "seed", "device"):
        assert re.search(rf'^{name} = param\("{name}"', src, re.M), f"parameter {name!r} missing or not via param()"


def test_introduction_states_goals_and_measured_run_times(nb):
    intro = nb.cells[0].source
    assert nb.cells[0].cell_type == "markdown" and "goals" in intro.lower()
    assert re.search(r"full mode about [\d.]+ ?(?:min|s)", intro), "full-mode run time not stated"
    assert re.search(r"smoke mode about [\d.]+ ?(?:min|s)", intro), "smoke-mode run time not stated"


def test_exercises_have_solutions_and_checks(nb):
    code = [c for c in nb.cells if c.cell_type == "code"]
    exercises = [i for i, c in enumerate(code) if BEGIN in c.source]
    assert len(exercises) >= 3, "a lab has at least three graded exercises"
    for i in exercises:
        assert code[i].source.count(BEGIN) == code[i].source.count(END)
        assert "NotImplementedError" in strip_solutions(code[i].source)
        follow = code[i + 1].source if i + 1 < len(code) else ""
        assert follow.startswith("# NBVAL_CHECK_OUTPUT") and "with exercise(" in follow, \
            f"exercise cell {i} is not followed by an asserting check cell"


def test_figures_saved_and_results_recorded(nb):
    src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "savefig(" in src and "lab.record" in src
    assert "results.record(" not in src, "record through lab.record (it fills in the notebook, mode, dataset and seed)"


def test_one_set_up_call(nb):
    """The set-up is one call with the notebook's parameters, in the cells the grader runs."""
    setup = "\n".join(c.source for c in nb.cells if "setup" in c.metadata.get("tags", []))
    number = re.search(r"^# (\d\d) ", nb.cells[0].source).group(1)
    calls = re.findall(r'^lab = setup_notebook\("(\d\d)", smoke=smoke, dataset=dataset, seed=seed, device=device',
                       setup, re.M)
    assert calls == [number], f"the set-up cells must call setup_notebook({number!r}, ...) once"
    rest = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and "setup" not in c.metadata.get("tags", []))
    assert "setup_notebook(" not in rest and "configure_outputs(" not in rest


#: A cell a student reads in one glance: code cells other than the set-up (imports) and the checks stay within this.
MAX_CELL_LINES = 36


def test_cells_read_in_one_glance(nb):
    long = {c.id: len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code"
            and "setup" not in c.metadata.get("tags", []) and "with exercise(" not in c.source
            and len(c.source.splitlines()) > MAX_CELL_LINES}
    assert not long, f"cells over {MAX_CELL_LINES} lines (split them where the lesson turns): {long}"


def test_committed_outputs_are_clean(nb):
    for c in nb.cells:
        for out in c.get("outputs", []):
            assert out.output_type != "error", "stored error output"
            text = str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
            assert not ABSOLUTE_PATH.search(text), f"machine path in output: {ABSOLUTE_PATH.search(text).group()}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_setup_cells_are_light_and_exercises_self_contained(nb):
    """The grader runs only the set-up cells, the exercises and their checks: those must not train or load models."""
    setup = "\n".join(c.source for c in nb.cells if "setup" in c.metadata.get("tags", []))
    assert setup, "tag the cells the exercises need with 'setup'"
    for heavy in ("get_baseline(", "get_variant(", "get_data(", "fit(", "distill("):
        assert heavy not in setup, f"a set-up cell calls {heavy}: move it out of the cells the grader runs"


def test_tables_read_as_text_and_no_machine_noise(nb):
    for c in nb.cells:
        for out in c.get("outputs", []):
            text = str(out.get("data", {}).get("text/plain", "")) + str(out.get("text", ""))
            assert "pandas.io.formats.style.Styler" not in text, "a Styler table has no plain-text form: use table()"
            assert "PosixPath(" not in text, "a path object leaked into the outputs"
            assert "[{'notebook'" not in text, "a cell's last expression printed rows of the results store"


#: Names of the course's internal source documents: a student cannot look them up.
INTERNAL_WORDS = re.compile(r"write-up|quantization demo|compression assignment|the DyT project|earlier version of "
                            r"this notebook|the brief\b|seed 00\d", re.I)


def test_sources_are_named_so_a_student_can_look_them_up(nb):
    """Cite the paper, the tutorial or the notebook number, never an internal document of the course's makers."""
    for c in nb.cells:
        text = c.source if c.cell_type == "markdown" else "\n".join(
            line for line in c.source.splitlines() if line.lstrip().startswith("#") or "#" in line)
        hit = INTERNAL_WORDS.search(text)
        assert hit is None, f"internal word {hit.group()!r} in a {c.cell_type} cell: {text[:80]!r}"
