"""What a notebook of the series needs besides the lesson: one set-up call and tables that read everywhere.

Nothing here runs at import time; a notebook calls :func:`setup_notebook` in its set-up cell.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd

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


def setup_notebook() -> None:
    """Plot style, table display and warning filters for a notebook of the series (call once, at the top)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams.update({"figure.dpi": 90, "savefig.dpi": 110, "axes.titlesize": 11})
    pd.set_option("display.width", 140)
    pd.set_option("display.max_columns", 30)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    if os.environ.get("COURSE_DEPRECATIONS") == "error":
        install_deprecation_canary()


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
