"""checks.mine_or_reference: later cells run the student's function, or the reference while it is unwritten."""

from __future__ import annotations

from course_utils.checks import mine_or_reference


def _stub(x: int) -> int:
    raise NotImplementedError("replace this line with your solution")


def _reference(x: int) -> int:
    return x + 1


def test_the_students_function_runs_when_written(capsys):
    run = mine_or_reference(lambda x: x * 10, _reference, "exercise 9")
    assert run(2) == 20 and capsys.readouterr().out == ""


def test_an_unwritten_function_falls_back_visibly_once(capsys):
    run = mine_or_reference(_stub, _reference, "exercise 9")
    assert run(2) == 3 and run(5) == 6
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "exercise 9" in out and "test_checks._reference" in out


def test_other_errors_of_the_students_function_are_not_hidden():
    def broken(x: int) -> int:
        raise ValueError("student bug")

    run = mine_or_reference(broken, _reference, "exercise 9")
    try:
        run(1)
    except ValueError as e:
        assert "student bug" in str(e)
    else:
        raise AssertionError("a bug in the student's function must surface, not fall back")
