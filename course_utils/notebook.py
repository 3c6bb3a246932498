"""What a notebook of the series needs besides the lesson: one set-up call and tables that read everywhere.

Nothing here runs at import time; a notebook calls :func:`setup_notebook` in its set-up cell and keeps the
:class:`Lab` it returns (``lab.mode``, ``lab.record(...)``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import results
from .args import check_int
from .base import get_device
from .paths import configure_outputs

#: Warnings that say nothing a student of this course can act on (deprecations are not among them: see CANARY).
QUIET_WARNINGS = (r".*sparse CSR support is in beta",)

#: The deprecation canary: these categories become errors in the unit tests (``tests/conftest.py``) and in the smoke
#: series (the runner sets ``COURSE_DEPRECATIONS=error``), so an API on its way out fails a check the day a library
#: announces it, not the day it is removed.
CANARY = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
#: The allow-list: (message pattern, category, why the course cannot act on it). Keep it short.
CANARY_ALLOWED: tuple[tuple[str, type[Warning], str], ...] = (
)


def deprecation_canary() -> list[tuple[str, str, type[Warning]]]:
    """The canary as ``(action, message, category)`` filters, the allow-list last (it wins)."""
    return [("error", "", c) for c in CANARY] + [("ignore", m, c) for m, c, _ in CANARY_ALLOWED]


def install_deprecation_canary() -> None:
    """Turn deprecation warnings into errors in this process, except the allow-list."""
    for action, message, category in deprecation_canary():
        warnings.filterwarnings(action, message=message, category=category)


@dataclass(frozen=True)
class Lab:
    """What every cell of a notebook shares after the set-up call: the run's mode, dataset, seed and device, and
    one way to record a result (the notebook, mode, dataset and seed filled in)."""

    notebook: str
    mode: str
    dataset: str
    seed: int
    device: str

    def record(self, metrics: Mapping[str, float], *, model: str = "", norm: str = "", technique: str = "",
               setting: str | int | float = "", seed: int | None = None) -> None:
        """Store ``metrics`` in the results store under this notebook, mode and dataset (``seed``: this run's
        seed unless given, e.g. for one of several student seeds). Returns nothing, so a cell ending with it
        prints nothing."""
        results.record(self.notebook, metrics, mode=self.mode, dataset=self.dataset, model=model, norm=norm,
                       technique=technique, setting=setting, seed=self.seed if seed is None else seed)


def setup_notebook(notebook: str, *, smoke: bool, dataset: str, seed: int, device: str = "cpu",
                   figures_dir: str = "", results_path: str = "", checkpoint_dir: str = "") -> Lab:
    """The one set-up call of a notebook of the series, with its parameters: plot style, table display and
    warning filters; where figures, results and checkpoints go; the seed; a checked device. Bad parameters fail
    here, before any long work, with the parameter's name."""
    import matplotlib as mpl
    import seaborn as sns

    if not isinstance(smoke, bool):
        raise ValueError(f"smoke={smoke!r} is not valid; it must be True or False")
    if not isinstance(dataset, str) or not dataset.strip():
        raise ValueError(f"dataset={dataset!r} is not valid; it must be a dataset name such as 'mnist_5k'")
    seed = check_int("seed", seed)
    get_device(device)  # ValueError naming the device when this machine does not have it
    configure_outputs(figures_dir, results_path, checkpoint_dir)
    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams.update({"figure.dpi": 90, "savefig.dpi": 110, "axes.titlesize": 11})
    pd.set_option("display.width", 140)
    pd.set_option("display.max_columns", 30)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    if os.environ.get("COURSE_DEPRECATIONS") == "error":
        install_deprecation_canary()
    torch.manual_seed(seed)
    np.random.seed(seed)
    return Lab(notebook, "smoke" if smoke else "full", dataset, seed, str(device))


Format = str | Mapping[str, str] | None


class Table:
    """A DataFrame shown as a formatted HTML table in Jupyter and as aligned plain text everywhere else
    (text views, diffs, exports, ``print``): the same formatting in both."""

    def __init__(self, df: pd.DataFrame, formats: Format = None, caption: str | None = None) -> None:
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        self.df, self.caption = df, caption
        if isinstance(formats, str):
            formats = {c: formats for c in df.columns if pd.api.types.is_numeric_dtype(df[c])}
        self.formats = dict(formats or {})
        unknown = set(self.formats) - set(df.columns)
        if unknown:
            raise ValueError(f"formats name columns {sorted(map(str, unknown))} that the table does not have")

    def _fmt(self, fmt: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        try:
            return fmt.format(v)
        except (ValueError, TypeError):
            return str(v)

    def formatted(self) -> pd.DataFrame:
        """The table with every formatted column turned into strings."""
        out = self.df.copy()
        for col, fmt in self.formats.items():
            out[col] = [self._fmt(fmt, v) for v in self.df[col]]
        return out

    def _repr_html_(self) -> str:
        styler = self.df.style.format({c: (lambda v, f=f: self._fmt(f, v)) for c, f in self.formats.items()})
        if self.caption:
            styler = styler.set_caption(self.caption)
        return styler.to_html()

    def __repr__(self) -> str:
        text = self.formatted().to_string()
        return f"{self.caption}\n{text}" if self.caption else text


def table(df: pd.DataFrame, formats: Format = None, caption: str | None = None) -> Table:
    """Show ``df`` with ``formats`` (``{"accuracy": "{:.1%}"}``, or one format for every numeric column)."""
    return Table(df, formats, caption)
