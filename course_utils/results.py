"""The results store: every notebook records its headline numbers so notebook 06 can aggregate them.

Rows are tidy (one metric per row). A row's identity is every field but ``value``; recording a row
with the same identity replaces the old one, so reruns never duplicate. Writes are atomic.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .io import atomic_write_text
from .paths import results_path

KEY_FIELDS = ("notebook", "mode", "dataset", "model", "norm", "technique", "setting", "seed", "metric")


def _path(path: os.PathLike | str | None) -> Path:
    return Path(path) if path is not None else results_path()


def load_rows(path: os.PathLike | str | None = None) -> list[dict[str, Any]]:
    """All stored rows (an empty list when the store does not exist yet)."""
    p = _path(path)
    if not p.exists():
        return []
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"results store {p.name} is not valid JSON ({e}); delete it to start over") from e


def record(notebook: str, metrics: dict[str, float], *, mode: str, dataset: str, model: str = "", norm: str = "",
           technique: str = "", setting: str = "", seed: int = 0,
           path: os.PathLike | str | None = None) -> list[dict[str, Any]]:
    """Upsert one row per metric for this (notebook, mode, dataset, model, norm, technique, setting, seed)."""
    if mode not in ("full", "smoke"):
        raise ValueError(f"mode={mode!r} is not valid; choose 'full' or 'smoke'")
    if not metrics:
        raise ValueError("metrics is empty: nothing to record")
    base = dict(notebook=notebook, mode=mode, dataset=dataset, model=model, norm=norm, technique=technique,
                setting=str(setting), seed=int(seed))
    new = []
    for metric, value in metrics.items():
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"metric {metric!r} is NaN; refusing to record it")
        new.append({**base, "metric": metric, "value": value})
    return upsert(new, path)


def upsert(rows: Iterable[dict[str, Any]], path: os.PathLike | str | None = None) -> list[dict[str, Any]]:
    """Insert ``rows``, replacing stored rows with the same identity; returns the whole store."""
    rows = list(rows)
    key = lambda r: tuple(r.get(k, "") for k in KEY_FIELDS)
    incoming = {key(r) for r in rows}
    kept = [r for r in load_rows(path) if key(r) not in incoming]
    merged = kept + rows
    atomic_write_text(json.dumps(merged, indent=1), _path(path))
    return merged


def load_results(path: os.PathLike | str | None = None, **filters: Any) -> pd.DataFrame:
    """The store as a DataFrame, optionally filtered by field values (e.g. ``notebook="01"``)."""
    df = pd.DataFrame(load_rows(path), columns=[*KEY_FIELDS, "value"])
    for k, v in filters.items():
        if k not in df.columns:
            raise ValueError(f"filter {k!r} is not a results field; choose from {list(df.columns)}")
        df = df[df[k] == v]
    return df.reset_index(drop=True)


def results_table(df: pd.DataFrame, index: list[str] | None = None) -> pd.DataFrame:
    """Pivot tidy rows into one column per metric."""
    index = index or ["model", "norm", "technique", "setting"]
    return df.pivot_table(index=index, columns="metric", values="value", aggfunc="mean")
