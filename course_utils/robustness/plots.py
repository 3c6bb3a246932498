"""Figures of the robustness notebook: corruption ladders, OOD samples, reliability diagrams, score histograms,
and corruption results per model. Lines and bars of a model use the course colour of its normalization."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..data import DatasetInfo
from ..plots import NORM_COLORS
from .calibration import ReliabilityData
from .corruption_metrics import CLEAN, _check_table
from .corruptions import CORRUPTIONS, MAX_SEVERITY, corrupt
from .images import unstandardize
from .ood_data import OODSet


def model_color(name: str) -> str | None:
    """The course colour of the normalization named in a model's name (``"vit-dyt-pruned"`` -> DyT's)."""
    low = name.lower()
    for norm in sorted(NORM_COLORS, key=len, reverse=True):
        if norm in low:
            return NORM_COLORS[norm]
    return None


def _show(ax: plt.Axes, img: torch.Tensor) -> None:
    """Draw one (C, H, W) image in [0, 1]; grey images in the grey colour map."""
    img = img.detach().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def corruption_grid(image: torch.Tensor, corruptions: Sequence[str] = CORRUPTIONS,
                    severities: Sequence[int] = tuple(range(MAX_SEVERITY + 1)), seed: int = 0,
                    info: DatasetInfo | None = None) -> plt.Figure:
    """One image under every corruption (rows) and severity (columns). ``image`` is (C, H, W) or (1, C, H, W)
    in [0, 1], or standardized if ``info`` is given."""
    x = image if image.ndim == 4 else image.unsqueeze(0)
    if info is not None:
        x = unstandardize(x, info.mean, info.std).clamp(0, 1)
    fig, axes = plt.subplots(len(corruptions), len(severities), squeeze=False,
                             figsize=(1.1 * len(severities) + 1.2, 1.1 * len(corruptions)))
    for r, c in enumerate(corruptions):
        for j, s in enumerate(severities):
            _show(axes[r][j], corrupt(x, c, s, seed)[0])
            if r == 0:
                axes[r][j].set_title("clean" if s == 0 else f"severity {s}", fontsize=8)
        axes[r][0].set_ylabel(c.replace("_", " "), rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def ood_grid(sets: Mapping[str, OODSet], info: DatasetInfo, per_set: int = 8) -> plt.Figure:
    """The first ``per_set`` images of every OOD set, one row per set, in pixel space."""
    fig, axes = plt.subplots(len(sets), per_set, squeeze=False, figsize=(1.0 * per_set + 1.4, 1.1 * len(sets)))
    for r, (name, s) in enumerate(sets.items()):
        pixels = unstandardize(s.x[:per_set], info.mean, info.std)
        for j in range(per_set):
            if j < len(pixels):
                _show(axes[r][j], pixels[j])
            else:
                axes[r][j].axis("off")
        axes[r][0].set_ylabel(f"{name}\n({s.kind})", rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def reliability_diagram(data: ReliabilityData, ax: plt.Axes | None = None, color: str | None = None,
                        label: str | None = None) -> plt.Axes:
    """Accuracy per confidence bin as bars against the diagonal (perfect calibration); bars below the
    diagonal are over-confidence. The legend gives the ECE."""
    ax = ax if ax is not None else plt.subplots(figsize=(3.8, 3.6))[1]
    full = data.count > 0
    width = data.upper - data.lower
    ax.bar(data.lower[full], data.accuracy[full], width=width[full], align="edge", color=color, alpha=0.75,
           edgecolor="black", linewidth=0.5, label=f"{label + ': ' if label else ''}ECE {data.ece:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title="reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def reliability_counts(data: Sequence[ReliabilityData], ax: plt.Axes, colors: Sequence[str | None] | None = None,
                       labels: Sequence[str] | None = None) -> plt.Axes:
    """How many test images fall in each confidence bin of one or more reliability diagrams (the same bins): side
    by side bars per bin, log-scale counts, so a reader sees which bars of the diagram rest on a handful of images."""
    k = len(data)
    colors = list(colors) if colors is not None else [None] * k
    labels = list(labels) if labels is not None else [None] * k
    for i, (d, color, label) in enumerate(zip(data, colors, labels)):
        width = (d.upper - d.lower) / k
        ax.bar(d.lower + i * width, np.maximum(d.count, 0), width=width, align="edge", color=color, alpha=0.75,
               edgecolor="black", linewidth=0.3, label=label)
    top = max((float(np.max(d.count)) for d in data), default=1.0)
    ax.set_yscale("log")
    ax.set(xlim=(0, 1), ylim=(0.8, max(10.0, 2 * top)), xlabel="confidence", ylabel="images per bin")
    return ax


def score_histograms(scores: Mapping[str, torch.Tensor], ax: plt.Axes | None = None, bins: int = 40,
                     title: str = "") -> plt.Axes:
    """Overlaid histograms (densities) of one detector's scores on several sets (higher = more ID)."""
    ax = ax if ax is not None else plt.subplots(figsize=(4.5, 3.2))[1]
    values = {k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=float)
              for k, v in scores.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins)
    for name, v in values.items():
        ax.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.4, label=name)
    ax.set(xlabel="score (higher = more in-distribution)", ylabel="density", title=title)
    ax.legend(fontsize=8)
    return ax


def corruption_heatmap(table: pd.DataFrame, value: str = "accuracy", ax: plt.Axes | None = None) -> plt.Axes:
    """Corruptions (rows) x models (columns), ``value`` averaged over severities (clean rows left out)."""
    t = _check_table(table)
    t = t[t["corruption"] != CLEAN]
    grid = t.pivot_table(index="corruption", columns="model", values=value, aggfunc="mean", sort=False)
    size = (1.2 * grid.shape[1] + 3.0, 0.32 * len(grid) + 1.6)
    ax = ax if ax is not None else plt.subplots(figsize=size)[1]
    sns.heatmap(grid, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": value})
    ax.set(xlabel="", ylabel="", title=f"{value}, mean over severities")
    return ax


def severity_curves(table: pd.DataFrame, ax: plt.Axes | None = None,
                    colors: Mapping[str, str] | None = None) -> plt.Axes:
    """Accuracy against severity (0 = clean), averaged over corruptions, one line per model."""
    t = _check_table(table)
    ax = ax if ax is not None else plt.subplots(figsize=(4.5, 3.2))[1]
    styles = ["-", "--", ":", "-."]
    for i, (name, group) in enumerate(t.groupby("model", sort=False)):
        curve = group.groupby("severity")["accuracy"].mean()
        color = (colors or {}).get(name) or model_color(name)
        ax.plot(curve.index, curve.values, marker="o", ms=3, color=color, ls=styles[i % len(styles)], label=name)
    ax.set(xlabel="severity (0 = clean)", ylabel="accuracy", title="accuracy under corruption")
    ax.legend(fontsize=8)
    return ax
