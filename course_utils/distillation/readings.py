"""What notebook 04's studies can say with their few student seeds: a caveat next to every verdict, and the
reading of the teacher-size study (a capacity gap needs an interval that excludes zero and enough seeds)."""

from __future__ import annotations

from ..args import check_int
from ..stats import Comparison


def seeds_caveat(n: int, significant: bool = False) -> str:
    """What a comparison over ``n`` student seeds per side can say; printed next to its verdict."""
    check_int("n", n, minimum=1)
    if n < 2:
        return "one student seed: the interval holds the test-set noise, not the seed-to-seed spread"
    if n == 2:
        return ("only two student seeds: the seed-to-seed spread is estimated from a single difference (1 degree of "
                "freedom)" + (", so an interval that excludes zero is a hint to check with more seeds, not a finding"
                              if significant else ""))
    return f"{n} student seeds"


def teacher_size_reading(best_vs_other: Comparison, n_seeds: int, other_is_largest: bool) -> str:
    """The teacher-size study's conclusion from the students of the best teacher against those of the largest (or,
    when the largest is best, the smallest) teacher: within noise, too few seeds, a capacity gap in the sense of
    Cho & Hariharan (2019), or a benefit of the larger teacher."""
    check_int("n_seeds", n_seeds, minimum=1)
    if not best_vs_other.significant:
        return ("Within noise: this run cannot rank the teachers by their students, so it shows neither a capacity "
                "gap nor a benefit of a larger teacher.")
    if n_seeds < 3:
        return "Too few seeds to call that " + ("a capacity gap." if other_is_largest else
                                                "a benefit of the larger teacher.")
    if other_is_largest:
        return "A capacity gap in the sense of Cho & Hariharan (2019), larger than the noise."
    return "The larger teacher taught better students here, by more than the noise."
