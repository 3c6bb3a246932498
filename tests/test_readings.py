"""The sentences the notebooks print come from package helpers: every branch of each one, and its bad inputs."""

from __future__ import annotations

import pytest

from course_utils.distillation import seeds_caveat, teacher_size_reading
from course_utils.metrics import amdahl_reading
from course_utils.quantization import half_speed_reading, norm_output_verdict, pace
from course_utils.stats import Comparison


def _cmp(diff: float, low: float, high: float) -> Comparison:
    return Comparison("a", "b", diff, low, high, "test")


def test_amdahl_reading_has_a_tolerance_band():
    assert amdahl_reading(1.25, 1.0).startswith("The measurement beats")
    assert amdahl_reading(0.85, 1.0).startswith("The measurement falls short")
    assert amdahl_reading(1.05, 1.0) == "The prediction holds within 10%"
    assert amdahl_reading(1.15, 1.0, tolerance=0.2) == "The prediction holds within 20%"
    with pytest.raises(ValueError, match="measured"):
        amdahl_reading(0.0, 1.0)


def test_pace_and_half_speed_reading():
    assert pace(1.2).endswith("(faster)") and pace(1.02).endswith("(within 5%)") and "2.0x slower" in pace(0.5)
    assert half_speed_reading(1.2, 1.3, 1.0, 64, 512, "bfloat16") == "faster than fp32 at both batch sizes"
    assert half_speed_reading(0.9, 1.3, 1.0, 64, 512, "bfloat16").startswith("faster than fp32 only at batch 64")
    assert half_speed_reading(1.2, 0.9, 1.0, 64, 512, "bfloat16").startswith("faster than fp32 only at batch 1")
    assert "runs 1.5x faster in float16" in half_speed_reading(0.9, 0.9, 1.5, 64, 512, "float16")
    assert "runs at 0.20x in float16" in half_speed_reading(0.2, 0.2, 0.2, 64, 512, "float16")


def test_norm_output_verdict_branches():
    dyt, ln = {"max_over_std": 3.0, "kurtosis": 2.0}, {"max_over_std": 9.0, "kurtosis": 20.0}
    worse = _cmp(-3.0, -5.0, -1.0)  # DyT's W4A4 drop larger than LayerNorm's, beyond noise
    noise = _cmp(-1.0, -3.0, 1.0)
    assert norm_output_verdict(4.0, dyt, ln, worse, "blocks.0.mlp.fc2", 0.93).startswith("Partly.")
    assert "blocks.0.mlp.fc2" in norm_output_verdict(4.0, dyt, ln, worse, "blocks.0.mlp.fc2", 0.93)
    assert norm_output_verdict(4.0, dyt, ln, noise, "x", 0.9).startswith("Yes for the norm outputs")
    assert norm_output_verdict(-2.0, dyt, ln, noise, "x", 0.9).startswith("No: LayerNorm's outputs")
    assert norm_output_verdict(0.5, dyt, ln, worse, "x", 0.9).startswith("No clear difference")


def test_distillation_readings():
    assert seeds_caveat(1).startswith("one student seed")
    assert seeds_caveat(2).endswith("(1 degree of freedom)")
    assert "a hint to check with more seeds" in seeds_caveat(2, significant=True)
    assert seeds_caveat(5) == "5 student seeds"
    gap = _cmp(2.0, 0.5, 3.5)
    assert teacher_size_reading(_cmp(0.5, -1.0, 2.0), 3, True).startswith("Within noise")
    assert teacher_size_reading(gap, 2, True) == "Too few seeds to call that a capacity gap."
    assert teacher_size_reading(gap, 2, False) == "Too few seeds to call that a benefit of the larger teacher."
    assert teacher_size_reading(gap, 3, True).startswith("A capacity gap")
    assert teacher_size_reading(gap, 3, False).startswith("The larger teacher taught better")
    with pytest.raises(ValueError, match="n_seeds"):
        teacher_size_reading(gap, 0, True)
