"""Which deployment to ship within an edge budget: the one rule notebooks 06 and 07 both use.

:func:`edge_candidates` turns notebook 06's rows of the results store into one row per deployment;
:func:`pick_edge_model` applies the rule (stated once, in its docstring) to such a table.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..stats import compare

#: The columns a candidate table needs (one row per deployment).
REQUIRED = ("accuracy", "size_kb", "ms_b1")
#: The identity of a deployment in the results store (notebook 06 records ``model="vit:<recipe>"``, ``norm``,
#: ``technique=<runtime>`` or ``"pipeline"``, ``setting=<precision>`` or the pipeline step).
KEYS = ("model", "norm", "technique", "setting")


def is_reference(candidates: pd.DataFrame) -> pd.Series:
    """The rows that are a dense model in eager PyTorch fp32 (``model`` ``"dense"`` or ``"<family>:dense"``,
    ``technique`` ``"pytorch"``, ``setting`` ``"fp32"``): what the accuracy floor is measured from."""
    if not {"model", "technique", "setting"} <= set(candidates.columns):
        return pd.Series(False, index=candidates.index)
    model = candidates["model"].astype(str).str.split(":").str[-1]
    return (model == "dense") & (candidates["technique"] == "pytorch") & (candidates["setting"] == "fp32")


def edge_candidates(store: pd.DataFrame) -> pd.DataFrame:
    """Notebook 06's rows of the results store (``results.load_results(...)``: one row per metric) as one row per
    deployment: the :data:`KEYS` columns, one column per metric (the mean where several seeds recorded it), and
    ``name`` (e.g. ``"dense dyt · openvino int8"``, ``"pipeline layernorm · pipeline 5 + OpenVINO int8"``)."""
    if not isinstance(store, pd.DataFrame) or not {*KEYS, "metric", "value"} <= set(store.columns):
        raise ValueError("store must be the results store as a DataFrame (results.load_results(...)) with columns "
                         f"{[*KEYS, 'metric', 'value']}")
    rows = store[store["notebook"] == "06"] if "notebook" in store.columns else store
    if rows.empty:
        return pd.DataFrame(columns=[*KEYS, *REQUIRED, "name"])
    wide = rows.pivot_table(index=list(KEYS), columns="metric", values="value", aggfunc="mean").reset_index()
    wide.columns.name = None
    wide["name"] = (wide["model"].astype(str).str.replace(r"^[a-z]+:", "", regex=True) + " " + wide["norm"] + " · "
                    + wide["technique"] + " " + wide["setting"])
    return wide


def pick_edge_model(candidates: pd.DataFrame, max_kb: float, max_ms: float, *, n_test: int,
                    level: float = 0.95) -> pd.Series | None:
    """The deployment to ship within ``max_kb`` on disk and ``max_ms`` at batch 1, or ``None`` if none qualifies.

    The rule, applied in this order:

    1. **Candidates**: every row of ``candidates`` (e.g. :func:`edge_candidates`) with a finite ``accuracy``,
       ``size_kb`` and ``ms_b1``: every model (dense, compressed, each step of the distill-prune-quantize
       pipeline), both normalizations, every runtime and precision, eager PyTorch included. Nothing else is left
       out.
    2. **Budget**: ``size_kb <= max_kb`` and ``ms_b1 <= max_ms`` (a model exactly at the budget fits).
    3. **Accuracy floor**: the reference is the most accurate dense model in eager PyTorch fp32 among the rows
       (:func:`is_reference`). A candidate is dropped only when it is *significantly* less accurate than the
       reference: ``stats.compare(candidate, reference, n_test)`` (binomial noise of both accuracies on the
       ``n_test`` test images, a ``level`` interval) lies entirely below zero. A difference within the noise is
       not a loss.
    4. **Choice**: of the rest, the smallest on disk; ties go to the faster at batch 1, then the more accurate,
       then the name. Size comes first because it is the same on every machine, while a latency is a property of
       the CPU it was measured on (notebook 06 prints that CPU): the budget check is the only place a latency
       enters, so a rerun on another machine changes the pick only when a model crosses ``max_ms``.

    Returns the chosen row (all of its columns; ``None`` when no candidate passes 2 and 3). ``n_test`` is the
    number of test images the accuracies were measured on (``info.test_size``).
    """
    if not isinstance(candidates, pd.DataFrame):
        raise ValueError(f"candidates must be a DataFrame (one row per deployment), got {type(candidates).__name__}")
    missing = [c for c in REQUIRED if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates lacks the column(s) {missing}; it needs {list(REQUIRED)} (see edge_candidates)")
    for name, value in (("max_kb", max_kb), ("max_ms", max_ms)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}={value!r} is not valid; it must be a number > 0")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1:
        raise ValueError(f"n_test={n_test!r} is not valid; give the number of test images (an integer >= 1)")
    ref_rows = candidates[is_reference(candidates) & candidates["accuracy"].notna()]
    if ref_rows.empty:
        raise ValueError("candidates has no dense eager fp32 row (model 'dense' or '<family>:dense', technique "
                         "'pytorch', setting 'fp32') with an accuracy: the accuracy floor is measured from it")
    reference = float(ref_rows["accuracy"].max())
    ok = candidates.dropna(subset=list(REQUIRED))
    ok = ok[(ok["size_kb"] <= max_kb) & (ok["ms_b1"] <= max_ms)]

    def lost_accuracy(acc: Any) -> bool:
        c = compare(float(min(max(acc, 0.0), 1.0)), reference, n_test, level=level)
        return c.significant and c.diff < 0

    ok = ok[[not lost_accuracy(a) for a in ok["accuracy"]]]
    if ok.empty:
        return None
    names = ok["name"] if "name" in ok.columns else pd.Series(ok.index.astype(str), index=ok.index)
    order = ok.assign(_acc=-ok["accuracy"], _name=names.astype(str))
    order = order.sort_values(["size_kb", "ms_b1", "_acc", "_name"], kind="mergesort")
    return order.drop(columns=["_acc", "_name"]).iloc[0]


def accuracy_floor(candidates: pd.DataFrame, n_test: int, level: float = 0.95) -> tuple[float, float]:
    """``(reference accuracy, lowest accuracy that is not significantly below it)`` of :func:`pick_edge_model`'s
    rule, for printing (found by walking down in steps of one test image)."""
    reference = float(candidates.loc[is_reference(candidates), "accuracy"].max())
    if not math.isfinite(reference):
        raise ValueError("candidates has no dense eager fp32 row with an accuracy")
    acc = reference
    while acc > 0:
        c = compare(acc - 1 / n_test, reference, n_test, level=level)
        if c.significant and c.diff < 0:
            break
        acc -= 1 / n_test
    return reference, acc
