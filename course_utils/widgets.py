"""Interactive widgets: move a threshold, watch the weights and the accuracy change.

In batch runs (papermill, nbval) ``ipywidgets.interactive`` calls the function once with the default value, so
the widget's ``result`` is always available and a test can drive it: ``w.children[0].value = 0.1``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .args import check_choice, check_number
from .modules import clone_model, effective_weight
from .pruning import SCALES, global_sparsity, prunable_layers, prune_by_threshold
from .train import evaluate


def threshold_slider(model: nn.Module, loader: DataLoader, layers: Iterable[str] | None = None,
                     tau: float = 0.4, tau_max: float | None = None, step: float = 0.01, scale: str = "absolute",
                     plot: bool = True):
    """An ``ipywidgets.interactive`` slider over tau: each move threshold-prunes a copy of ``model``.

    The function returns (and the widget's ``result`` holds) ``{"tau", "sparsity", "accuracy"}``; with
    ``plot`` it also draws the weight histogram (log counts) with the pruned region and the numbers.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .plots import weight_histogram

    check_choice("scale", scale, SCALES)
    check_number("step", step, 0.0, low_open=True)
    names = list(prunable_layers(model, layers))
    weights = torch.cat([effective_weight(model.get_submodule(n)).flatten() for n in names])
    if tau_max is None:
        tau_max = 1.0 if scale == "quantile" else float(weights.abs().max())
    tau = min(check_number("tau", tau, 0.0), tau_max)

    def update(tau: float) -> dict[str, float]:
        m = clone_model(model)
        used = prune_by_threshold(m, tau, names, scale)
        res = {"tau": float(tau), "sparsity": global_sparsity(m, names), "accuracy": evaluate(m, loader)["accuracy"]}
        if plot:
            fig, ax = plt.subplots(figsize=(7, 3.2))
            weight_histogram(ax, weights, threshold=float(np.mean(list(used.values()))) if used else None)
            ax.set_title(f"tau={tau:.2f} ({scale}): sparsity {res['sparsity']:.1%}, "
                         f"test accuracy {res['accuracy']:.2%}")
            plt.show()
        return res

    slider = widgets.FloatSlider(value=tau, min=0.0, max=tau_max, step=step, description="tau",
                                 continuous_update=False, readout_format=".3f")
    return widgets.interactive(update, tau=slider)
