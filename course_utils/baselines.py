"""Notebook 01's baselines, trained once and loaded from checkpoints by every later notebook."""

from __future__ import annotations

from typing import Any

from torch import nn

from .args import check_choice
from .checkpoints import train_or_load
from .data import DataBundle, get_data, random_shift
from .models import build_model
from .train import TRAINER, History, fit

#: Full-mode training recipe per model family (smoke mode trains 1 epoch).
#: Both use random shifts of up to 2 pixels as augmentation (``course_utils.data.random_shift``).
RECIPES: dict[str, dict[str, Any]] = {
    "vit": {"epochs": 15, "lr": 5e-3, "weight_decay": 0.05, "augment": "shift"},
    "cnn": {"epochs": 8, "lr": 3e-3, "weight_decay": 0.05, "augment": "shift"},
}
AUGMENTATIONS = {"shift": random_shift, "none": None}
#: DyT's default initial alpha (the paper's value for non-LLM models).
DEFAULT_ALPHA = 0.5


def baseline_config(model: str = "vit", norm: str = "dyt", dataset: str = "mnist_5k", smoke: bool = False,
                    seed: int = 0, epochs: int | None = None, batch_size: int = 64, size: str = "small",
                    subset: int | None = None, alpha_init: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """The configuration that identifies a baseline checkpoint."""
    check_choice("model", model, RECIPES)
    recipe = dict(RECIPES[model])
    recipe["epochs"] = epochs if epochs is not None else (1 if smoke else recipe["epochs"])
    cfg = dict(model=model, norm=norm, size=size, dataset=dataset, smoke=bool(smoke), seed=seed,
               batch_size=batch_size, subset=subset, **recipe, trainer=TRAINER)
    if alpha_init != DEFAULT_ALPHA:
        cfg["alpha_init"] = float(alpha_init)
    return cfg


def checkpoint_name(config: dict[str, Any]) -> str:
    """File stem of a baseline checkpoint, e.g. ``vit-small-dyt-mnist_5k-full-s0`` (``-a1`` for alpha_init=1)."""
    mode = "smoke" if config["smoke"] else "full"
    alpha = f"-a{config['alpha_init']:g}" if "alpha_init" in config else ""
    return (f"{config['model']}-{config['size']}-{config['norm']}{alpha}-{config['dataset']}-{mode}"
            f"-s{config['seed']}")


def get_baseline(model: str = "vit", norm: str = "dyt", dataset: str = "mnist_5k", smoke: bool = False,
                 seed: int = 0, epochs: int | None = None, batch_size: int = 64, size: str = "small",
                 subset: int | None = None, data: DataBundle | None = None, device: str = "auto",
                 progress: bool = True, force: bool = False, alpha_init: float = DEFAULT_ALPHA,
                 verbose: bool = True) -> tuple[nn.Module, History]:
    """A trained baseline: loaded from ``checkpoints/`` when its configuration matches, else trained and saved.

    Returns the model on the CPU in eval mode and its training history.
    """
    cfg = baseline_config(model, norm, dataset, smoke, seed, epochs, batch_size, size, subset, alpha_init)
    bundle = data if data is not None else get_data(dataset, batch_size, subset=subset, smoke=smoke, seed=seed)
    info = bundle.info

    def build() -> nn.Module:
        return build_model(model, norm, info.num_classes, info.input_shape, size, alpha_init=alpha_init)

    def train(m: nn.Module) -> History:
        return fit(m, bundle.train_loader, bundle.test_loader, epochs=cfg["epochs"], lr=cfg["lr"],
                   weight_decay=cfg["weight_decay"], device=device, progress=progress,
                   desc=checkpoint_name(cfg), seed=seed, augment=AUGMENTATIONS[cfg["augment"]])

    m, history = train_or_load(checkpoint_name(cfg), build, train, cfg, force=force, verbose=verbose)
    return m.cpu(), history
