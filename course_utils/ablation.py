"""Notebook 07's analysis: the ablation's rows (this run's and the shipped 10-seed reference) into verdicts.

Twenty DyT-vs-reference comparisons at the 5% level would call one "significant" by luck about every other time.
:func:`compare_norms` therefore reports, besides each paired interval, whether the difference survives Holm's
step-down correction of the family-wise error over all the comparisons it makes. Its p-values come from the same
rule as the intervals (:func:`course_utils.stats.compare`, test-set noise included), so an interval that excludes
zero and an unadjusted p < 0.05 always agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .results import load_rows
from .stats import compare, mean_ci

#: The rows' identity without the metric (``technique`` holds the regime).
ID = ["model", "norm", "technique", "setting", "seed"]


def wide(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, source: str) -> pd.DataFrame:
    """Tidy store rows of notebook 07 (one metric per row) -> one row per model, one column per metric."""
    df = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows
    if df.empty:
        return pd.DataFrame(columns=[*ID, "accuracy", "drop_points", "source"])
    df = df[df.notebook == "07"]
    out = df.pivot_table(index=ID, columns="metric", values="value", aggfunc="first").reset_index()
    out.columns.name = None
    out["source"] = source
    return out


def load_reference(path: os.PathLike | str, mode: str, dataset: str) -> pd.DataFrame:
    """The reference store's rows for ``mode`` and ``dataset`` (wide; empty when it has none, or no file)."""
    rows = [r for r in load_rows(path) if r.get("mode") == mode and r.get("dataset") == dataset]
    return wide(rows, "reference")


def provenance(store: os.PathLike | str) -> dict[str, Any]:
    """The provenance written beside a reference store by the sweep (command, commit, date, machine, wall time);
    empty when there is none."""
    path = Path(store)
    path = path.with_name(path.stem + ".provenance.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cpu_model() -> str:
    """This machine's CPU model, as the sweep records it in a reference's provenance."""
    from .deploy.machine import parse_cpuinfo

    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())["cpu_model"]
    except OSError:
        return parse_cpuinfo("")["cpu_model"]


def reproduction_note(prov: Mapping[str, Any]) -> str:
    """Why this run's numbers for a seed can differ from the reference's: training is deterministic for a given CPU,
    thread count and library version, but the floating-point kernels PyTorch picks differ between CPUs (vector
    width, fused multiply-add order), and a few ULPs early in training become a different model after some epochs:
    on another CPU a seed behaves like a new seed, so the comparison over seeds, not the single rows, is what
    carries over."""
    machine = prov.get("machine", {}) if prov else {}
    ref_cpu, here = machine.get("cpu", "unknown"), cpu_model()
    if ref_cpu != here:
        return (f"The reference was trained on another CPU ({ref_cpu}; this one: {here}): floating-point kernels "
                "differ between CPUs, so the same seed trains a slightly different model; the reference's rows are "
                "used for the seeds it has.")
    return ("Same CPU model as the reference: check the torch version and the threads per training against its "
            "provenance; the reference's rows are used for the seeds it has.")


def combine(own: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Reference rows plus this run's rows for the models the reference lacks (its own seeds "on top").

    Returns the table and the largest accuracy difference (points) between this run and the reference on the
    models both have (NaN when none): the same seed on the same machine kind should give the same numbers."""
    if reference.empty:
        return own.copy(), float("nan")
    both = own.merge(reference, on=ID, suffixes=("", "_ref"))
    gap = float((100 * (both.accuracy - both.accuracy_ref)).abs().max()) if len(both) else float("nan")
    keys = set(map(tuple, reference[ID].to_numpy().tolist()))
    extra = own[[tuple(k) not in keys for k in own[ID].to_numpy().tolist()]]
    return pd.concat([reference, extra], ignore_index=True), gap


def p_value(a: Sequence[float], b: Sequence[float], n_test: int | None = None, paired: bool = True) -> float:
    """Two-sided p-value of :func:`~course_utils.stats.compare`'s rule: one minus the largest confidence level
    whose interval still excludes zero (found by bisection; 1.0 when even the narrowest contains it)."""
    def excludes(level: float) -> bool:
        return compare(a, b, n_test, paired=paired, level=level).significant

    lo, hi = 1e-9, 1 - 1e-12  # excludes(level) is True for small levels and False near 1 unless p ~ 0
    if not excludes(lo):
        return 1.0
    if excludes(hi):
        return 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excludes(mid) else (lo, mid)
    return float(1 - lo)


def holm(p: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down procedure: which hypotheses are rejected with the family-wise error kept at ``alpha``.

    Sort the p-values; the k-th smallest (k = 0, 1, ...) is rejected while every one before it was and
    ``p_(k) <= alpha / (m - k)``; the first that fails stops the walk."""
    pv = np.asarray(p, dtype=float)
    if pv.ndim != 1 or np.any((pv < 0) | (pv > 1)) or np.any(np.isnan(pv)):
        raise ValueError(f"p={list(p)!r} is not valid; give p-values between 0 and 1")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} is not valid; it must be between 0 and 1")
    reject = np.zeros(pv.size, dtype=bool)
    for k, i in enumerate(np.argsort(pv, kind="stable")):
        if pv[i] > alpha / (pv.size - k):
            break
        reject[i] = True
    return reject


def compare_norms(table: pd.DataFrame, families: Mapping[str, tuple[str, str]], regimes: Sequence[str],
                  n_test: int, alpha: float = 0.05, setting: str = "ablation",
                  correction: Callable[[Sequence[float], float], np.ndarray] = holm) -> pd.DataFrame:
    """Per family and regime: each norm's mean drop with its 95% interval over seeds, and the paired DyT minus
    reference difference (seeds both norms have) with its interval, p-value and Holm verdict over all rows
    (``correction``: :func:`holm`, or a student's own in notebook 07)."""
    rows = []
    d = table[table.setting == setting]
    for family, (n_dyt, n_ref) in families.items():
        for regime in regimes:
            r = d[(d.model == family) & (d.technique == regime)]
            a, b = (r[r.norm == n].set_index("seed").drop_points for n in (n_dyt, n_ref))
            seeds = sorted(set(a.index) & set(b.index))
            if len(seeds) < 2:
                continue
            a, b = a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float)
            (ma, la, ha), (mb, lb, hb) = mean_ci(a), mean_ci(b)
            c = compare(a / 100, b / 100, n_test, paired=True)
            rows.append({"family": family, "regime": regime, "n": len(seeds), "dyt_drop": ma, "dyt_low": la,
                         "dyt_high": ha, "ref": n_ref, "ref_drop": mb, "ref_low": lb, "ref_high": hb,
                         "diff": c.diff, "diff_low": c.low, "diff_high": c.high,
                         "p": p_value(a / 100, b / 100, n_test), "significant": c.significant})
    out = pd.DataFrame(rows)
    if len(out):
        out["holm"] = np.asarray(correction(out.p.to_numpy(), alpha), dtype=bool)
    return out


def verdict(row: Any) -> str:
    """The sentence for one row of :func:`compare_norms`: "within noise" unless the interval excludes zero, and an
    effect only if it survives Holm's correction."""
    diff = row["diff"] if isinstance(row, pd.Series) else row.diff  # a Series' .diff is a method
    if not row.significant:
        return "within noise"
    more = f"DyT loses {abs(diff):.1f} points {'MORE' if diff < 0 else 'LESS'}"
    return f"{more} (survives Holm)" if row.holm else f"outside the noise alone, not after Holm's correction ({more})"


def held_status(one_seed_significant: bool, one_seed_diff: float, row: Any) -> str:
    """What became of a one-seed claim once the seeds are in: no claim to test, confirmed, reversed or not confirmed
    (only a difference that survives Holm's correction confirms or reverses)."""
    diff = row["diff"] if isinstance(row, pd.Series) else row.diff
    if not one_seed_significant:
        return "no claim in one seed (within noise)"
    if row.holm:
        return "confirmed over seeds" if np.sign(diff) == np.sign(one_seed_diff) else "reversed over seeds"
    return "not confirmed over seeds"
