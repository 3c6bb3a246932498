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
from matplotlib.ticker import PercentFormatter
from matplotlib.transforms import Bbox

from .norms import REGISTRY
from .paths import figures_dir, relative

#: One colour per normalization for the whole course (every plot of every notebook uses these).
NORM_COLORS: dict[str, str] = {name: spec.color for name, spec in REGISTRY.items()}
#: Display names of the normalizations.
NORM_LABELS: dict[str, str] = {name: spec.label for name, spec in REGISTRY.items()}
#: One colour per distillation method (notebook 04), none of them a normalization's colour: in a figure of DyT
#: students, blue would read as "DyT" and orange as "LayerNorm". The teacher is drawn in crimson, also not used here.
METHOD_COLORS: dict[str, str] = {"scratch": "#222222", "kd": "#7b2cbf", "fitnet": "#e377c2", "crd": "#c9b800",
                                 "crd+kd": "#6b4226", "infonce": "#00a6a6"}


def norm_color(norm: str) -> str:
    """The course colour of a normalization (``"dyt"``, ``"layernorm"``, ``"batchnorm"``, ``"derf"``, ...)."""
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
    for norm in REGISTRY:
        if norm in low.replace(" ", ""):
            return NORM_COLORS[norm]
    return "#555555"


#: Axis labels of the keys of a training history.
HISTORY_LABELS = {"train_loss": "training loss (cross-entropy)", "test_acc": "test accuracy",
                  "train_acc": "training accuracy",
                  "test_loss": "test loss (cross-entropy)"}


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
        ax.set_ylabel(HISTORY_LABELS.get(key, key.replace("_", " ")))
        ax.set_title(key.replace("_", " "))
        if key.endswith("_acc"):  # the course's tables print accuracies in %, so the axes do too
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
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


def _label_offsets(max_radius: float, step: float = 7.0) -> list[tuple[float, float]]:
    """Candidate offsets (points) of a label from its point: up and to the right first, then rings of growing
    radius, eight directions each."""
    offsets = [(3.0, 3.0)]
    for r in np.arange(9.0, max_radius + 1e-9, step):
        for a in np.radians([45, 135, -45, -135, 0, 90, 180, 270]):
            offsets.append((float(r * np.cos(a)), float(r * np.sin(a))))
    return offsets


def annotate_points(ax: plt.Axes, xs: Iterable[float], ys: Iterable[float], labels: Iterable[str],
                    fontsize: float = 7, max_radius: float = 60.0, marker_pt: float = 4.0, **kwargs) -> list:
    """Label scattered points without overlaps: each label goes to the first free spot (no other label, no
    point, no legend, inside the axes if possible) on rings of growing radius around its point, with a thin grey
    leader line once it moved away. Free spots are found in display coordinates, so call it when the layout is
    final (after ``fig.tight_layout()`` and ``ax.legend()``). Returns the annotations."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    xs, ys, labels = list(xs), list(ys), [str(s) for s in labels]
    pts = ax.transData.transform(np.column_stack([xs, ys]).astype(float)) if xs else np.empty((0, 2))
    half = marker_pt * fig.dpi / 72
    markers = [Bbox.from_bounds(px - half, py - half, 2 * half, 2 * half) for px, py in pts]
    taken: list[Bbox] = []
    inside = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    if legend is not None:
        fig.canvas.draw()  # resolves loc="best"
        box = legend.get_window_extent(renderer)
        taken.append(box)
        if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1):
            # keep it there: "best" would otherwise move it off the labels and onto the points
            legend.set_loc(tuple(ax.transAxes.inverted().transform((box.x0, box.y0))))
    offsets = _label_offsets(max_radius)
    out = []
    for i, (x, y, label) in enumerate(zip(xs, ys, labels)):
        others = taken + markers[:i] + markers[i + 1:]
        choice, fallback = None, None
        for dx, dy in offsets:
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            t = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha,
                            va=va, **kwargs)
            box = t.get_window_extent(renderer).expanded(1.04, 1.1)
            t.remove()
            if not any(box.overlaps(b) for b in others):
                if fallback is None:
                    fallback = (dx, dy, ha, va, box)
                if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1):
                    choice = (dx, dy, ha, va, box)
                    break
        dx, dy, ha, va, box = choice or fallback or (3.0, 3.0, "left", "bottom", None)
        far = np.hypot(dx, dy) > 8
        out.append(ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha=ha, va=va, arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5,
                                                         "shrinkA": 0, "shrinkB": 2} if far else None, **kwargs))
        if box is not None:
            taken.append(box)
    return out


def binomial_errorbars(ax: plt.Axes, x: Iterable[float], accuracy: Iterable[float], n_test: int,
                       scale: float = 100.0, level: float = 0.95, **kwargs) -> plt.Axes:
    """Error bars of a ``level`` binomial interval (normal approximation) around single-model accuracies measured
    on ``n_test`` test images, drawn in dark grey (not a norm's colour); ``scale`` 100 plots percent."""
    from scipy import stats as sps

    from .stats import binomial_se

    acc = np.asarray(list(accuracy), dtype=float)
    half = sps.norm.ppf(0.5 + level / 2) * np.array([binomial_se(float(a), n_test) for a in acc])
    style = {"fmt": "none", "ecolor": "#444444", "capsize": 3, "lw": 1, "zorder": 1} | kwargs
    ax.errorbar(list(x), scale * acc, yerr=scale * half, **style)
    return ax


def log_ticks(ax: plt.Axes, axis: str = "x", subs: tuple[float, ...] = (1, 2, 5)) -> plt.Axes:
    """Readable ticks on a log axis: labels at 1, 2 and 5 times powers of ten written as plain numbers
    (``200``, not ``2 x 10^2``), and no labelled minor ticks that would overlap them."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(plt.LogLocator(subs=subs))
    target.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_locator(plt.NullLocator())
    return ax
