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


def decimals(step: float) -> int:
    """How many decimals show every value a slider with this ``step`` can take (0.005 -> 3, 0.01 -> 2)."""
    text = f"{step:.10f}".rstrip("0")
    return max(len(text.split(".")[1]), 1)


def threshold_slider(model: nn.Module, loader: DataLoader, layers: Iterable[str] | None = None,
                     tau: float = 0.4, tau_max: float | None = None, step: float = 0.01, scale: str = "absolute",
                     plot: bool = True, curve_points: int = 12):
    """An ``ipywidgets.interactive`` slider over tau: each move threshold-prunes a copy of ``model``.

    The function returns (and the widget's ``result`` holds) ``{"tau", "sparsity", "accuracy"}``; a live readout
    under the slider (``children[1]``) shows the same numbers after every move. With ``plot`` it also draws the
    weight histogram (log counts) with the pruned region, and the sparsity-accuracy curve over ``curve_points``
    values of tau (computed once) with the slider's point marked on it.
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
    places = decimals(step)

    def measure(t: float) -> tuple[dict[str, float], dict[str, float]]:
        m = clone_model(model)
        used = prune_by_threshold(m, t, names, scale)
        return {"tau": float(t), "sparsity": global_sparsity(m, names),
                "accuracy": evaluate(m, loader)["accuracy"]}, used

    grid = np.linspace(0.0, tau_max, curve_points, endpoint=scale != "quantile")  # a quantile of 1 is no threshold
    curve = [measure(float(t))[0] for t in grid] if plot and curve_points > 0 else []
    readout = widgets.HTML()

    def update(tau: float) -> dict[str, float]:
        res, used = measure(tau)
        if plot:
            fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(12 if curve else 7, 3.2), squeeze=False)
            weight_histogram(axes[0, 0], weights, threshold=float(np.mean(list(used.values()))) if used else None)
            axes[0, 0].set_title(f"tau={tau:.{places}f} ({scale}): sparsity {res['sparsity']:.1%}, "
                                 f"test accuracy {res['accuracy']:.2%}")
            if curve:
                ax = axes[0, 1]
                ax.plot([100 * c["sparsity"] for c in curve], [100 * c["accuracy"] for c in curve], "o-",
                        color="gray", ms=3, label="tau grid")
                ax.plot(100 * res["sparsity"], 100 * res["accuracy"], "o", color="crimson", ms=9, label="slider")
                ax.set(xlabel="sparsity (%)", ylabel="test accuracy (%)", title="where the slider sits")
                ax.legend(fontsize=8)
            fig.tight_layout()
            plt.show()
        # last: JupyterLab may run widget callbacks on a kernel thread of their own, so a reader of the readout then
        # finds the plot drawn too (the browser check waits for `result`, which ipywidgets sets after this returns)
        readout.value = (f"<b>tau = {tau:.{places}f}</b> ({scale}): sparsity <b>{res['sparsity']:.1%}</b>, "
                         f"test accuracy <b>{res['accuracy']:.2%}</b>")
        return res

    slider = widgets.FloatSlider(value=tau, min=0.0, max=tau_max, step=step, description="tau",
                                 continuous_update=False, readout_format=f".{places}f",
                                 layout=widgets.Layout(width="90%"))
    w = widgets.interactive(update, tau=slider)
    w.children = (w.children[0], readout, *w.children[1:])
    return w
