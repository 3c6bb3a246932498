"""Noise-aware verdicts, checked against scipy and by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from course_utils.notebook import Table, table
from course_utils.stats import (
    binomial_se,
    bootstrap_ci,
    compare,
    correlation,
    mean_ci,
    pareto_front,
)


def test_binomial_se_on_a_thousand_images():
    assert binomial_se(0.9, 1000) == pytest.approx(math.sqrt(0.09 / 1000))
    assert binomial_se(0.5, 1000) * 100 == pytest.approx(1.58, abs=0.01)
    with pytest.raises(ValueError, match="n="):
        binomial_se(0.5, 0)


def test_mean_ci_matches_scipy():
    v = [0.91, 0.93, 0.94, 0.90]
    m, lo, hi = mean_ci(v)
    ref = sps.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=sps.sem(v))
    assert (lo, hi) == pytest.approx(ref)
    assert math.isnan(mean_ci([0.9])[1])


def test_single_values_use_binomial_noise():
    c = compare(0.943, 0.950, n_test=1000, labels=("DyT", "LN"))
    assert not c.significant and "within noise" in c.verdict() and c.diff == pytest.approx(-0.7)
    c = compare(0.90, 0.96, n_test=1000, labels=("DyT", "LN"))
    assert c.significant and c.verdict().startswith("DyT is 6.0 points lower than LN")
    with pytest.raises(ValueError, match="n_test"):
        compare(0.9, 0.95)


def test_seed_spread_and_paired_seeds():
    a, b = [0.75, 0.70, 0.79], [0.74, 0.72, 0.75]
    welch = compare(a, b)
    res = sps.ttest_ind(np.array(a) * 100, np.array(b) * 100, equal_var=False)
    assert (welch.low, welch.high) == pytest.approx(tuple(res.confidence_interval(0.95)), rel=1e-6)
    assert not welch.significant
    paired = compare([0.80, 0.82, 0.84], [0.78, 0.80, 0.82], paired=True)
    assert paired.diff == pytest.approx(2.0) and paired.significant  # the same +2 points on every seed
    with pytest.raises(ValueError, match="paired"):
        compare([0.8], [0.7], paired=True)


def test_paired_seeds_on_one_test_set_add_its_noise():
    # three seeds that each differ by the same 2 of 1,000 images: no seed spread, but not an effect
    tiny = compare([0.902, 0.912, 0.922], [0.900, 0.910, 0.920], paired=True)
    assert tiny.significant and tiny.low == pytest.approx(tiny.high), "without n_test: the seed spread alone"
    shared = compare([0.902, 0.912, 0.922], [0.900, 0.910, 0.920], 1000, paired=True)
    assert not shared.significant and "shared test images" in shared.verdict()
    assert shared.high - shared.low == pytest.approx(2 * 1.959964 * 100 * math.sqrt((0.002 - 0.002 ** 2) / 1000))
    # a consistent 2-point gain survives, with a wider interval than the seeds alone give
    big = compare([0.80, 0.82, 0.84], [0.78, 0.80, 0.82], 1000, paired=True)
    assert big.significant and big.diff == pytest.approx(2.0)
    # with seed spread: never narrower than the seeds alone or the test set alone
    a, b = np.array([0.93, 0.95, 0.94]), np.array([0.92, 0.92, 0.93])
    seeds_only, both = compare(a, b, paired=True), compare(a, b, 1000, paired=True)
    d = a - b
    t_half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3) * 100
    z_half = sps.norm.ppf(0.975) * math.sqrt((d.mean() - d.mean() ** 2) / 1000) * 100
    assert (both.high - both.low) / 2 == pytest.approx(math.hypot(t_half, z_half))
    assert both.high - both.low > seeds_only.high - seeds_only.low


def test_the_test_set_noise_bound_holds_for_integer_differences():
    """Var of the mean of integer per-image differences z is at least (|mean| - mean^2) / n (the bound above)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        z = rng.choice([-2, -1, 0, 1, 2], size=1000, p=rng.dirichlet(np.ones(5)))
        assert z.var() >= abs(z.mean()) - z.mean() ** 2 - 1e-12


def test_bootstrap_contains_the_mean_and_narrows_with_data():
    rng = np.random.default_rng(0)
    d = rng.normal(1.0, 1.0, size=50)
    lo, hi = bootstrap_ci(d)
    assert lo < d.mean() < hi
    lo2, hi2 = bootstrap_ci(np.tile(d, 4))
    assert hi2 - lo2 < hi - lo


def test_correlation_needs_points():
    r, lo, hi = correlation([1, 2, 3], [3, 2, 1])
    assert r == pytest.approx(-1.0) and (lo, hi) == (-1.0, 1.0), "three teachers cannot establish a trend"
    x = np.arange(30.0)
    r, lo, hi = correlation(x, x + np.random.default_rng(0).normal(0, 3, 30))
    assert lo > 0.8 and r < hi


def test_pareto_front_by_brute_force():
    rng = np.random.default_rng(1)
    cost, value = rng.random(40), rng.random(40)
    mask = pareto_front(cost, value)
    for i in range(40):
        beaten = any(cost[j] <= cost[i] and value[j] >= value[i] and (cost[j] < cost[i] or value[j] > value[i])
                     for j in range(40))
        assert mask[i] == (not beaten)
    assert pareto_front([1, 1], [0.5, 0.5]).all(), "equal points do not beat each other"


def test_table_reads_in_html_and_text():
    df = pd.DataFrame({"model": ["a", "b"], "accuracy": [0.9431, float("nan")], "kB": [569.34, 12.0]})
    df = df.set_index("model")
    t = table(df, {"accuracy": "{:.1%}", "kB": "{:.0f}"}, caption="demo")
    text = repr(t)
    assert "94.3%" in text and "569" in text and "-" in text and "demo" in text and "Styler" not in text
    html = t._repr_html_()
    assert "94.3%" in html and "<table" in html
    assert "0.9431" not in text
    with pytest.raises(ValueError, match="columns"):
        Table(df, {"nope": "{:.1f}"})


def test_last_within_noise_is_the_edge_before_the_first_significant_drop():
    from course_utils.stats import last_within_noise

    bits, acc = [8, 6, 4, 3, 2], [0.94, 0.943, 0.935, 0.80, 0.10]
    assert last_within_noise(bits, acc, 0.943, 1000) == 4
    assert last_within_noise([0.5, 0.9], [0.95, 0.96], 0.95, 1000) == 0.9
    assert math.isnan(last_within_noise([0.5], [0.5], 0.95, 1000))
    with pytest.raises(ValueError, match="same"):
        last_within_noise([1, 2], [0.5], 0.9, 100)


def test_compare_drops_adds_the_noise_of_four_accuracies():
    from course_utils.stats import compare_drops

    c = compare_drops(0.79, 0.943, 0.951, 0.962, 1000, labels=("DyT drop", "LN drop"))
    assert c.diff == pytest.approx(-14.2) and c.significant and "lower" in c.verdict()
    small = compare_drops(0.94, 0.943, 0.955, 0.962, 1000)
    assert not small.significant
    se = math.sqrt(sum(v * (1 - v) / 1000 for v in (0.94, 0.943, 0.955, 0.962))) * 100
    assert small.high - small.low == pytest.approx(2 * 1.959964 * se, rel=1e-4)
