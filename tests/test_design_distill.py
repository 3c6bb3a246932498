"""Design task ``distill-budget`` (notebook 04): configurations checked before any work, students trained once per
recipe (a second measurement loads the checkpoint), latency and accuracy measured against the teacher, graded."""

from __future__ import annotations

import threading

import pytest
from design_grading import grade_design_answers

from course_utils import designs
from course_utils.designs import distill_budget
from course_utils.metrics import count_parameters
from course_utils.models import VIT_PRESETS, build_model
from course_utils.steps import STUDENT

REFERENCE = {"size": "nano", "method": "crd", "epochs": 20}


@pytest.fixture
def trainings(monkeypatch) -> list[str]:
    """The methods ``distill_student`` trains, in order (it still trains): a checkpoint that loads adds nothing."""
    calls: list[str] = []
    real = distill_budget.distill_student

    def counted(teacher, method, *args, **kwargs):
        calls.append(method)
        return real(teacher, method, *args, **kwargs)

    monkeypatch.setattr(distill_budget, "distill_student", counted)
    return calls


def test_the_students_are_the_presets_smaller_than_the_teacher():
    sizes = distill_budget.student_sizes()
    assert sizes == ("nano", "tiny") and set(sizes) < set(VIT_PRESETS)
    params = lambda s: count_parameters(build_model("vit", "dyt", size=s))["total"]  # noqa: E731
    assert all(params(s) < params(distill_budget.TEACHER) for s in sizes)


@pytest.mark.parametrize("config, needle", [
    (["nano", "kd"], "give a dict"), ({"size": "nano", "method": "kd", "lr": 0.1}, r"unknown keys \['lr'\]"),
    ({"method": "kd"}, r"must name \['size'\]"), ({"size": "small", "method": "kd"}, "smaller than the teacher"),
    ({"size": "huge", "method": "kd"}, "size must be one of"), ({"size": "nano", "method": "dark"}, "method must be"),
    ({"size": "nano", "method": "kd", "temperature": 0.5}, r"temperature must be a number in \[1, 10\]"),
    ({"size": "nano", "method": "kd", "temperature": "4"}, "temperature must be a number"),
    ({"size": "nano", "method": "kd", "kd_weight": 1.5}, r"kd_weight must be a number in \[0, 1\]"),
    ({"size": "nano", "method": "kd", "kd_weight": True}, "kd_weight must be a number"),
    ({"size": "nano", "method": "kd", "epochs": 40}, "epochs must be a whole number from 1 to 20"),
    ({"size": "nano", "method": "kd", "epochs": 0}, "epochs must be a whole number"),
    ({"size": "nano", "method": "kd", "epochs": 10.5}, "epochs must be a whole number"),
])
def test_a_bad_configuration_is_refused_before_any_work(config, needle, trainings):
    with pytest.raises(ValueError, match=needle):
        designs.evaluate("distill-budget", config, smoke=True)
    assert not trainings


def test_left_out_knobs_are_the_zoos_recipe():
    full = designs.get_design("distill-budget").check({"size": "tiny", "method": "kd"})
    assert full == {"size": "tiny", "method": "kd", "temperature": STUDENT["temperature"],
                    "kd_weight": STUDENT["kd_weight"], "epochs": 20}


def test_the_recipe_keys_only_what_changes_the_training():
    check = designs.get_design("distill-budget").check
    recipe = lambda **kw: distill_budget.recipe(check({"size": "nano", **kw}), smoke=False)  # noqa: E731
    assert recipe(method="crd", temperature=8.0, kd_weight=0.1) == recipe(method="crd")  # no KD term: no effect
    assert recipe(method="kd", temperature=8.0) != recipe(method="kd")
    assert recipe(method="crd+kd", kd_weight=0.9)["losses"]["kd"] == 0.9
    assert recipe(method="kd", epochs=5)["epochs"] == 5
    assert distill_budget.recipe(check({"size": "nano", "method": "kd", "epochs": 5}), smoke=True)["epochs"] == 1


def test_a_second_measurement_loads_the_student_instead_of_training_it(trainings):
    first = designs.evaluate("distill-budget", REFERENCE, smoke=True, split="dev")
    again = designs.evaluate("distill-budget", {**REFERENCE, "temperature": 9.0}, smoke=True, split="dev")
    assert trainings == ["crd"]  # CRD has no KD term: the temperature names the same student
    for key in ("drop_points", "student_accuracy", "teacher_accuracy", "images"):
        assert first.measured[key] == again.measured[key]
    assert [t.what for t in first.targets] == ["batch-1 CPU latency, % of the teacher's",
                                               "accuracy lost on the dev half"]
    assert first.measured["student_ms"] > 0 and first.measured["teacher_ms"] > 0 and 0 <= first.fraction <= 1
    designs.evaluate("distill-budget", {"size": "nano", "method": "kd", "temperature": 4.0}, smoke=True)
    assert trainings == ["crd", "kd"]


def test_the_same_answer_measured_twice_at_once_trains_once(trainings):
    errors: list[BaseException] = []

    def measure() -> None:
        try:
            designs.evaluate("distill-budget", {"size": "nano", "method": "fitnet"}, smoke=True, split="held-out")
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=measure) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and trainings == ["fitnet"]


def test_the_grader_measures_the_written_recipe(tmp_path, trainings):
    expected = designs.evaluate("distill-budget", REFERENCE, smoke=True, split="held-out")
    answers = {"ann": repr(REFERENCE), "bea": repr(REFERENCE), "bob": "dict(size='nano', method='kd')",
               "cy": "{'size': 'small', 'method': 'kd'}"}
    rows = grade_design_answers(tmp_path, "distill-budget", "my_recipe", REFERENCE, answers)
    assert trainings == ["crd"]  # the notebook's measurement and two identical answers: one training
    for student in ("ann", "bea"):
        row = rows[student, "1 design"]
        assert 0 <= float(row["points"]) <= 4 and expected.targets[1].line() in row["message"]
    assert rows["bob", "1 design"]["points"] == "0" and "written out as a literal" in rows["bob", "1 design"]["message"]
    assert rows["cy", "1 design"]["points"] == "0" and "smaller than the teacher" in rows["cy", "1 design"]["message"]
