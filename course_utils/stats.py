"""Verdicts that respect noise: confidence intervals for accuracies, differences and trends.

A test set of 1,000 images gives an accuracy about 0.7 points of standard error; two training seeds can differ by
several points. Every comparison the notebooks print goes through :func:`compare`, which knows both sources of
noise and says "within noise" when the interval of the difference contains zero, instead of explaining noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .args import check_int, check_number


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` test examples: ``sqrt(p (1 - p) / n)``."""
    check_number("p", p, 0.0, 1.0)
    check_int("n", n, 1)
    return math.sqrt(p * (1 - p) / n)


def _values(name: str, x: float | Sequence[float]) -> np.ndarray:
    v = np.atleast_1d(np.asarray(x, dtype=float))
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be one or more finite numbers, got {x!r}")
    return v


def mean_ci(values: float | Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the mean (the interval is NaN for a single value)."""
    v = _values("values", values)
    check_number("level", level, 0.0, 1.0, low_open=True, high_open=True)
    m = float(v.mean())
    if v.size < 2:
        return m, float("nan"), float("nan")
    half = sps.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return m, m - half, m + half


def bootstrap_ci(differences: Sequence[float], level: float = 0.95, n_boot: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences (resampling the pairs)."""
    d = _values("differences", differences)
    check_int("n_boot", n_boot, 100)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    return float(np.quantile(means, 0.5 - level / 2)), float(np.quantile(means, 0.5 + level / 2))


@dataclass(frozen=True)
class Comparison:
    """The difference ``a - b`` (in ``unit``) with its confidence interval and how it was computed."""

    a: str
    b: str
    diff: float
    low: float
    high: float
    method: str
    unit: str = "points"

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero: the difference is larger than the noise."""
        return bool(self.low > 0 or self.high < 0)

    def verdict(self) -> str:
        """One sentence a student can trust."""
        ci = f"95% CI {self.low:+.1f} to {self.high:+.1f} {self.unit}, {self.method}"
        if not self.significant:
            return f"{self.a} vs {self.b}: {self.diff:+.1f} {self.unit}, within noise ({ci})"
        word = "higher" if self.diff > 0 else "lower"
        return f"{self.a} is {abs(self.diff):.1f} {self.unit} {word} than {self.b} ({ci})"

    def __str__(self) -> str:
        return self.verdict()


def compare(a: float | Sequence[float], b: float | Sequence[float], n_test: int | None = None,
            labels: tuple[str, str] = ("A", "B"), paired: bool = False, level: float = 0.95,
            scale: float = 100.0, unit: str = "points") -> Comparison:
    """Compare two accuracies (fractions) or two sets of accuracies over seeds; the difference is in points.

    - Several values on both sides: a Student-t interval of the mean difference (paired when ``paired``, i.e.
      the same seeds on both sides; Welch's otherwise).
    - Paired, with ``n_test``: every seed was scored on the *same* test images, so the seed spread misses the
      noise of having drawn those images. It is added from a lower bound on it: per image the difference ``z`` is
      an integer, so ``E[z^2] >= E|z| >= |mean|`` and the test-set variance of the mean difference is at least
      ``(|mean| - mean^2) / n_test``. The half-width is ``sqrt((t_{n-1} se_seeds)^2 + (z se_test)^2)``: never
      narrower than either source alone. Without it, three seeds that agree to one or two images would call a
      0.2-point difference an effect.
    - A single value on a side: its noise is the binomial standard error on ``n_test`` examples (required then).
    """
    va, vb = _values("a", a), _values("b", b)
    check_number("level", level, 0.0, 1.0, low_open=True, high_open=True)
    q = sps.norm.ppf(0.5 + level / 2)
    if paired:
        if va.size != vb.size or va.size < 2:
            raise ValueError("paired=True needs the same number (>= 2) of values on both sides, one per seed")
        if n_test is None:
            m, lo, hi = mean_ci((va - vb) * scale, level)
            return Comparison(*labels, m, lo, hi, f"paired t over {va.size} seeds", unit)
        check_int("n_test", n_test, 1)
        d = va - vb
        seed_var = float(d.var(ddof=1)) / d.size
        mean = float(d.mean())
        test_var = max(abs(mean) - mean * mean, 0.0) / n_test
        t = float(sps.t.ppf(0.5 + level / 2, d.size - 1))
        half = math.sqrt(t * t * seed_var + q * q * test_var)
        return Comparison(*labels, mean * scale, (mean - half) * scale, (mean + half) * scale,
                          f"paired t over {va.size} seeds and the noise of {n_test} shared test images", unit)
    if va.size >= 2 and vb.size >= 2:
        sa, sb = va.var(ddof=1) / va.size, vb.var(ddof=1) / vb.size
        se = math.sqrt(sa + sb)
        dof = (sa + sb) ** 2 / (sa ** 2 / (va.size - 1) + sb ** 2 / (vb.size - 1)) if se > 0 else 1.0
        half = sps.t.ppf(0.5 + level / 2, dof) * se * scale
        m = (va.mean() - vb.mean()) * scale
        return Comparison(*labels, m, m - half, m + half, f"Welch t, {va.size} vs {vb.size} seeds", unit)
    if n_test is None:
        raise ValueError("a single value on a side needs n_test (the number of test examples) for its noise")
    check_int("n_test", n_test, 1)

    def se_of(v: np.ndarray) -> float:
        if v.size >= 2:
            return float(v.std(ddof=1) / math.sqrt(v.size))
        return binomial_se(float(np.clip(v[0], 0.0, 1.0)), n_test)

    se = math.sqrt(se_of(va) ** 2 + se_of(vb) ** 2) * scale
    m = (va.mean() - vb.mean()) * scale
    return Comparison(*labels, m, m - q * se, m + q * se, f"binomial noise on {n_test} test images", unit)


def compare_drops(acc_a: float, ref_a: float, acc_b: float, ref_b: float, n_test: int,
                  labels: tuple[str, str] = ("A", "B"), level: float = 0.95) -> Comparison:
    """Compare two accuracy *changes* measured on one test set each (e.g. DyT's W4A4 drop from its own fp32
    accuracy against LayerNorm's): ``(acc_a - ref_a) - (acc_b - ref_b)`` in points, with the binomial noise of
    all four accuracies (a conservative interval: the shared test images make the real noise smaller)."""
    for name, v in (("acc_a", acc_a), ("ref_a", ref_a), ("acc_b", acc_b), ("ref_b", ref_b)):
        check_number(name, v, 0.0, 1.0)
    check_int("n_test", n_test, 1)
    diff = ((acc_a - ref_a) - (acc_b - ref_b)) * 100
    se = 100 * math.sqrt(sum(binomial_se(v, n_test) ** 2 for v in (acc_a, ref_a, acc_b, ref_b)))
    half = sps.norm.ppf(0.5 + level / 2) * se
    return Comparison(*labels, diff, diff - half, diff + half, f"binomial noise on {n_test} test images")


def last_within_noise(levels: Sequence[float], accuracies: Sequence[float], reference: float, n_test: int) -> float:
    """Walk ``levels`` from the mildest compression to the strongest (e.g. 8 bits down to 2, or sparsity 0.5 up
    to 0.95) and return the last level reached before the first accuracy significantly below ``reference``
    (``nan`` when already the first level is). A noise-aware "cliff": how far compression goes for free."""
    if len(levels) != len(accuracies) or not len(levels):
        raise ValueError("levels and accuracies must have the same, non-zero length")
    last = float("nan")
    for level, acc in zip(levels, accuracies):
        c = compare(acc, reference, n_test)
        if c.significant and c.diff < 0:
            break
        last = float(level)
    return last


def correlation(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Pearson r with a Fisher-z confidence interval; with fewer than 4 points the interval is (-1, 1)."""
    vx, vy = _values("x", x), _values("y", y)
    if vx.size != vy.size or vx.size < 2:
        raise ValueError("x and y must have the same length (at least 2)")
    if np.std(vx) == 0 or np.std(vy) == 0:
        return float("nan"), -1.0, 1.0
    r = float(np.corrcoef(vx, vy)[0, 1])
    if vx.size < 4:
        return r, -1.0, 1.0
    z, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), sps.norm.ppf(0.5 + level / 2) / math.sqrt(vx.size - 3)
    return r, float(np.tanh(z - half)), float(np.tanh(z + half))


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points no other point beats: none has lower-or-equal cost and higher-or-equal value
    with at least one strictly better (e.g. cost = size on disk or latency, value = accuracy)."""
    c, v = _values("cost", cost), _values("value", value)
    if c.size != v.size:
        raise ValueError("cost and value must have the same length")
    dominated = ((c[None, :] <= c[:, None]) & (v[None, :] >= v[:, None])
                 & ((c[None, :] < c[:, None]) | (v[None, :] > v[:, None])))
    return ~dominated.any(axis=1)
