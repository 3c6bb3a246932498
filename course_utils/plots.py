"""Plots shared by the notebooks; every figure is saved under ``figures/``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from .paths import figures_dir, relative

#: One colour per normalization for the whole course (every plot of every notebook uses these).
NORM_COLORS: dict[str, str] = {"dyt": "#1f77b4", "layernorm": "#ff7f0e", "batchnorm": "#2ca02c", "identity": "#7f7f7f"}
#: Display names of the normalizations.
NORM_LABELS: dict[str, str] = {"dyt": "DyT", "layernorm": "LayerNorm", "batchnorm": "BatchNorm", "identity": "none"}
#: One colour per distillation method (notebook 04), none of them a normalization's colour: in a figure of DyT
#: students, blue would read as "DyT" and orange as "LayerNorm". The teacher is drawn in crimson, also not used here.
METHOD_COLORS: dict[str, str] = {"scratch": "#222222", "kd": "#7b2cbf", "fitnet": "#e377c2", "crd": "#c9b800",
                                 "crd+kd": "#6b4226", "infonce": "#00a6a6"}


def norm_color(norm: str) -> str:
    """The course colour of a normalization (``"dyt"``, ``"layernorm"``, ``"batchnorm"``, ``"identity"``)."""
    if norm not in NORM_COLORS:
        raise ValueError(f"norm={norm!r} has no course colour; choose one of {list(NORM_COLORS)}")
    return NORM_COLORS[norm]


def savefig(fig: plt.Figure, name: str, directory: os.PathLike | str | None = None) -> None:
    """Save ``fig`` as ``<figures>/<name>.png`` and say where (returns nothing, so a notebook cell that ends with
    it shows the figure, not a path)."""
    d = Path(directory) if directory is not None else figures_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"saved {relative(path)}")


#: Line styles for a second grouping (e.g. the method or the model family) within one colour per norm.
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def run_color(label: str) -> str:
    """The course colour of a run label that names a norm (``"vit-dyt"``, ``"ViT-LayerNorm"``), else grey."""
    low = label.lower()
    for norm in ("layernorm", "batchnorm", "identity", "dyt"):
        if norm in low.replace(" ", ""):
            return NORM_COLORS[norm]
    return "#555555"


def plot_histories(histories: Mapping[str, Mapping[str, list[float]]],
                   keys: Iterable[str] = ("train_loss", "test_acc")) -> plt.Figure:
    """Learning curves: one panel per history key, one line per run, coloured by the norm its label names
    (runs of different model families that share a norm get different line styles)."""
    keys = list(keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    seen: dict[str, int] = {}
    styles = {}
    for label in histories:
        color = run_color(label)
        styles[label] = LINESTYLES[seen.get(color, 0) % len(LINESTYLES)]
        seen[color] = seen.get(color, 0) + 1
    for ax, key in zip(axes[0], keys):
        for label, h in histories.items():
            if key in h:
                x = h.get("test_epoch" if key.startswith("test_") and "test_epoch" in h else "epoch",
                          range(1, len(h[key]) + 1))
                ax.plot(x, h[key], styles[label], marker="o", ms=3, color=run_color(label), label=label)
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", " "))
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def lines_by_norm(ax: plt.Axes, df: pd.DataFrame, x: str, y: str, norm: str = "norm", style: str | None = None,
                  label: str = "{norm}", **kwargs) -> plt.Axes:
    """One line per norm (the course colour) and, with ``style``, per value of that column (line style)."""
    groups = [norm] + ([style] if style else [])
    style_values = list(dict.fromkeys(df[style])) if style else [None]
    for key, d in df.sort_values(x).groupby(groups, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        n, sv = key[0], (key[1] if style else None)
        i = style_values.index(sv)
        ax.plot(d[x], d[y], LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)], ms=4,
                color=norm_color(n), label=label.format(norm=NORM_LABELS.get(n, n), style=sv), **kwargs)
    ax.set(xlabel=x, ylabel=y)
    return ax


def bars_by_norm(ax: plt.Axes, df: pd.DataFrame, x: str, y: str, norm: str = "norm",
                 yerr: str | None = None) -> plt.Axes:
    """Grouped bars: one group per value of ``x``, one bar per norm in the course colours."""
    cats = list(dict.fromkeys(df[x]))
    norms = list(dict.fromkeys(df[norm]))
    width = 0.8 / len(norms)
    for i, n in enumerate(norms):
        d = df[df[norm] == n].set_index(x).reindex(cats)
        ax.bar(np.arange(len(cats)) + (i - (len(norms) - 1) / 2) * width, d[y], width, color=norm_color(n),
               yerr=d[yerr] if yerr else None, capsize=3, label=NORM_LABELS.get(n, n))
    ax.set_xticks(np.arange(len(cats)), [str(c) for c in cats])
    ax.set(xlabel=x, ylabel=y)
    return ax


def weight_histogram(ax: plt.Axes, weights: torch.Tensor | np.ndarray, title: str = "", bins: int = 80,
                     color: str | None = None, threshold: float | None = None) -> plt.Axes:
    """Histogram of a weight tensor with log-scale counts; dashed lines at +/- ``threshold`` if given."""
    w = weights.detach().flatten().cpu().numpy() if isinstance(weights, torch.Tensor) else np.ravel(weights)
    sns.histplot(w, bins=bins, ax=ax, color=color, element="step", fill=True)
    ax.set_yscale("log")
    zeros = float(np.mean(w == 0))
    ax.set_title(f"{title}  (zeros {zeros:.0%})" if title else f"zeros {zeros:.0%}")
    ax.set_xlabel("weight value")
    if threshold is not None:
        for t in (-threshold, threshold):
            ax.axvline(t, color="crimson", ls="--", lw=1)
    return ax
