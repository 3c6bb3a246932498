"""``prune-budget`` (notebook 02): per-layer sparsities for the ViT-DyT that keep at most 25% of its prunable
weights and lose at most 1 point of accuracy after the course's fine-tuning.

The student picks one sparsity per layer from the sensitivity curves and histograms; layers left out keep all
their weights. Measured here: magnitude pruning of each layer (``prune.l1_unstructured``) of the dense baseline,
the zoo's fine-tuning recipe with the masks held, then the accuracy of dense and pruned on the same half of the
test set (a paired difference: the noise of 500 images is mostly shared by both).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ..metrics import accuracy
from ..modules import fold_masks
from ..pruning import global_sparsity, layerwise_prune, prunable_layers
from ..steps import finetune
from .registry import (
    SEED,
    DesignResult,
    DesignTask,
    Target,
    baseline,
    check_per_layer,
    register_design,
    split_data,
)

MAX_KEPT, MAX_DROP = 25.0, 1.0  # percent of the prunable weights; accuracy points


def layer_names() -> list[str]:
    """The layers a configuration may name: the prunable layers (Linear, Conv2d) of the course's ViT."""
    from ..models import build_model

    return list(prunable_layers(build_model("vit", "dyt")))


def check(config: Any) -> dict[str, float]:
    """``{layer name: sparsity in [0, 1)}``; ValueError naming the first problem."""
    config = check_per_layer(config, layer_names(), "prunable", "sparsity",
                             lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
                             "sparsities must be numbers in [0, 1)")
    return {k: float(v) for k, v in config.items()}


def prune_layers(model: nn.Module, sparsities: dict[str, float]) -> nn.Module:
    """Magnitude-prune each named layer of ``model`` at its own sparsity (in place; masks stay until made
    permanent): ``layerwise_prune`` one layer at a time."""
    for name, s in sparsities.items():
        if s > 0:
            layerwise_prune(model, s, [name])
    return model


def kept_percent(model: nn.Module) -> float:
    """Percent of the prunable layers' weights that are not zero."""
    return 100.0 * (1.0 - global_sparsity(model))


def measure(sparsities: dict[str, float], smoke: bool, split: str) -> DesignResult:
    dense, data = baseline(smoke)
    model = prune_layers(copy.deepcopy(dense), sparsities)
    finetune(model, data, "vit", seed=SEED, smoke=smoke)
    fold_masks(model)
    xy = split_data(data, split)
    drop = 100.0 * (accuracy(dense, xy) - accuracy(model, xy))
    kept = kept_percent(model)
    return DesignResult((Target("weights kept", kept, MAX_KEPT, 2 * MAX_KEPT, "%"),
                         Target(f"accuracy lost on the {split} half", drop, MAX_DROP, MAX_DROP + 4.0, " pt")),
                        {"kept_percent": kept, "drop_points": drop, "images": float(len(xy[1]))})


PRUNE_BUDGET = register_design(DesignTask(
    "prune-budget", "my_sparsities",
    "per-layer sparsities: at most 25% of the ViT-DyT's prunable weights kept, at most 1 point lost after fine-tuning",
    check, measure))
