"""Plots shared by the notebooks; every figure is saved under ``figures/``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .paths import figures_dir, relative

#: One colour per normalization for the whole course (every plot of every notebook uses these).
NORM_COLORS: dict[str, str] = {"dyt": "#1f77b4", "layernorm": "#ff7f0e", "batchnorm": "#2ca02c", "identity": "#7f7f7f"}
#: Display names of the normalizations.
NORM_LABELS: dict[str, str] = {"dyt": "DyT", "layernorm": "LayerNorm", "batchnorm": "BatchNorm", "identity": "none"}


def norm_color(norm: str) -> str:
    """The course colour of a normalization (``"dyt"``, ``"layernorm"``, ``"batchnorm"``, ``"identity"``)."""
    if norm not in NORM_COLORS:
        raise ValueError(f"norm={norm!r} has no course colour; choose one of {list(NORM_COLORS)}")
    return NORM_COLORS[norm]


def savefig(fig: plt.Figure, name: str, directory: os.PathLike | str | None = None) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` and return the path."""
    d = Path(directory) if directory is not None else figures_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"saved {relative(path)}")
    return path


def plot_histories(histories: Mapping[str, Mapping[str, list[float]]],
                   keys: Iterable[str] = ("train_loss", "test_acc")) -> plt.Figure:
    """Learning curves: one panel per history key, one line per run."""
    keys = list(keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, h in histories.items():
            if key in h:
                ax.plot(h.get("epoch", range(1, len(h[key]) + 1)), h[key], marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", " "))
    axes[0][0].legend()
    fig.tight_layout()
    return fig


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
