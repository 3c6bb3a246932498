"""Notebook 07's analysis: Holm's correction, p-values that agree with the intervals, and merging the reference."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from course_utils import ablation
from course_utils.stats import compare


def test_holm_matches_the_step_down_rule_by_hand():
    # m = 4: 0.005 <= 0.05/4 and 0.01 <= 0.05/3 are rejected; 0.03 > 0.05/2 stops the walk, so 0.04 is kept too
    assert ablation.holm([0.01, 0.04, 0.03, 0.005]).tolist() == [True, False, False, True]
    assert ablation.holm([0.04]).tolist() == [True] and ablation.holm([0.06]).tolist() == [False]
    # not Bonferroni: 0.04 > 0.05/2 fails Bonferroni, but after 0.001 is rejected Holm compares it with 0.05/1
    assert ablation.holm([0.001, 0.04]).tolist() == [True, True]
    with pytest.raises(ValueError, match="p="):
        ablation.holm([0.1, 1.5])


def test_p_value_is_the_paired_t_test_and_agrees_with_the_interval():
    rng = np.random.default_rng(0)
    for n in (3, 10):
        b = rng.normal(0.8, 0.03, n)
        a = b + rng.normal(0.01, 0.01, n)
        assert ablation.p_value(a, b) == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-6)
        p = ablation.p_value(a, b, 1000)
        assert p >= sps.ttest_rel(a, b).pvalue  # the test-set noise only widens
        assert (p < 0.05) == compare(a, b, 1000, paired=True).significant
    assert ablation.p_value([0.5, 0.6], [0.5, 0.6]) == 1.0


def _rows(source_seeds, shift=0.0):
    rows = []
    for s in source_seeds:
        for n, base in (("dyt", 0.90), ("layernorm", 0.92)):
            for regime, drop in (("dense", 0.0), ("ptq-w4a4", -5.0 if n == "dyt" else -1.0)):
                acc = base + drop / 100 + 0.001 * s + shift
                rows += [{"notebook": "07", "mode": "full", "dataset": "d", "model": "vit", "norm": n,
                          "technique": regime, "setting": "ablation", "seed": s, "metric": m, "value": v}
                         for m, v in (("accuracy", acc), ("drop_points", drop + (0.3 * s if n == "dyt" else 0)))]
    return rows


def test_combine_takes_the_reference_and_adds_this_runs_other_seeds():
    ref, own = ablation.wide(_rows(range(10)), "reference"), ablation.wide(_rows([0, 10], shift=0.002), "this run")
    table, gap = ablation.combine(own, ref)
    assert sorted(table.seed.unique()) == list(range(11))
    assert (table[table.seed == 0].source == "reference").all() and (table[table.seed == 10].source == "this run").all()
    assert gap == pytest.approx(0.2)
    out = ablation.compare_norms(table, {"vit": ("dyt", "layernorm")}, ["ptq-w4a4"], n_test=1000)
    r = out.iloc[0]
    assert r["n"] == 11 and r["diff"] < 0 and r["significant"] and r["holm"]
    alone, gap = ablation.combine(own, ablation.wide([], "reference"))
    assert len(alone) == len(own) and np.isnan(gap)


def test_compare_norms_skips_regimes_with_fewer_than_two_paired_seeds():
    table = ablation.wide(_rows([0]), "this run")
    assert ablation.compare_norms(table, {"vit": ("dyt", "layernorm")}, ["ptq-w4a4"], 1000).empty
    assert isinstance(table, pd.DataFrame)


def test_verdicts_respect_noise_and_holm():
    from types import SimpleNamespace as Row

    assert ablation.verdict(Row(diff=-2.0, significant=False, holm=False)) == "within noise"
    assert ablation.verdict(Row(diff=-2.0, significant=True, holm=True)) == "DyT loses 2.0 points MORE (survives Holm)"
    assert ablation.verdict(Row(diff=1.5, significant=True, holm=False)) == \
        "outside the noise alone, not after Holm's correction (DyT loses 1.5 points LESS)"
    held = Row(diff=3.5, significant=True, holm=True)
    assert ablation.held_status(False, 7.3, held) == "no claim in one seed (within noise)"
    assert ablation.held_status(True, 7.3, held) == "confirmed over seeds"
    assert ablation.held_status(True, -7.3, held) == "reversed over seeds"
    assert ablation.held_status(True, 7.3, Row(diff=3.5, significant=True, holm=False)) == "not confirmed over seeds"
