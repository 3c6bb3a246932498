"""Corruption robustness in numbers: accuracy per corruption and severity, mean corruption accuracy, and the
corruption error relative to a reference model (Hendrycks & Dietterich 2019).

With ``E(m, c, s)`` the top-1 error of model ``m`` on corruption ``c`` at severity ``s``:

- mean corruption accuracy (mCA): ``1 - E`` averaged over all corruptions and severities;
- corruption error ``CE(m, c) = sum_s E(m, c, s) / sum_s E(ref, c, s)``, and ``mCE`` its mean over corruptions;
  ImageNet-C's reference is AlexNet, here it is whichever model you name (e.g. the dense DyT model), so
  mCE < 1 means more robust than the reference;
- relative CE: the same with ``E(m, c, s) - E(m, clean)``, i.e. only the *extra* error due to corruption.

A table has one row per (model, corruption, severity) with an ``accuracy``; clean rows have
``corruption == "clean"`` and ``severity == 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from torch import nn

from ..metrics import accuracy
from .corrupted_data import corrupted_loader
from .corruptions import CORRUPTIONS, SEVERITIES

CLEAN = "clean"
COLUMNS = ("model", "corruption", "severity", "accuracy")


def corruption_accuracy(models: Mapping[str, nn.Module], dataset: str = "mnist_5k",
                        corruptions: Iterable[str] = CORRUPTIONS, severities: Iterable[int] = SEVERITIES,
                        seed: int = 0, size: int | None = None, device: str = "cpu", **kwargs) -> pd.DataFrame:
    """Accuracy of every model on the clean test set and on every (corruption, severity) copy of it.

    The corrupted sets come from :func:`corrupted_loader` (cached); ``kwargs`` go there (``root``...).
    """
    if not models:
        raise ValueError("models is empty; pass {name: model}")
    rows = []
    for c, s in [(CLEAN, 0)] + [(c, s) for c in corruptions for s in severities]:
        # severity 0 is the clean test set whichever corruption is named
        loader = corrupted_loader(dataset, c if c != CLEAN else CORRUPTIONS[0], s, seed, size, **kwargs)
        rows += [{"model": name, "corruption": c, "severity": s, "accuracy": accuracy(m, loader, device)}
                 for name, m in models.items()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; it needs {list(COLUMNS)}")
    return table.assign(error=1 - table["accuracy"])


def mean_corruption_accuracy(table: pd.DataFrame) -> pd.Series:
    """mCA per model: accuracy averaged over every corrupted (non-clean) row."""
    t = _check_table(table)
    return t[t["corruption"] != CLEAN].groupby("model", sort=False)["accuracy"].mean().rename("mCA")


def corruption_errors(table: pd.DataFrame, reference: str, relative: bool = False) -> pd.DataFrame:
    """CE (or relative CE) per model (rows) and corruption (columns), relative to model ``reference``.

    A corruption on which the reference makes no (extra) error gives NaN: the ratio is undefined there.
    """
    t = _check_table(table)
    if reference not in set(t["model"]):
        raise ValueError(f"reference={reference!r} is not a model of the table; choose one of "
                         f"{list(dict.fromkeys(t['model']))}")
    corrupted = t[t["corruption"] != CLEAN].copy()
    if relative:
        clean = t[t["corruption"] == CLEAN].groupby("model")["error"].mean()
        if not set(corrupted["model"]) <= set(clean.index):
            raise ValueError("relative CE needs a clean row (corruption='clean', severity=0) for every model")
        corrupted["error"] = corrupted["error"] - corrupted["model"].map(clean)
    sums = corrupted.pivot_table(index="model", columns="corruption", values="error", aggfunc="sum", sort=False)
    ref = sums.loc[reference].replace(0.0, np.nan)
    return sums.div(ref, axis=1)


def summarize_corruptions(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per model: clean accuracy, mCA, mCE and relative mCE (both relative to ``reference``)."""
    t = _check_table(table)
    out = pd.DataFrame({"clean_accuracy": t[t["corruption"] == CLEAN].groupby("model", sort=False)["accuracy"]
                        .mean()})
    out = out.join(mean_corruption_accuracy(table), how="outer")
    out["mCE"] = corruption_errors(table, reference).mean(axis=1)
    if (t["corruption"] == CLEAN).any():
        out["relative_mCE"] = corruption_errors(table, reference, relative=True).mean(axis=1)
    return out
