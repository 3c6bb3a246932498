"""Checkpoints shared between notebooks: trained once, keyed by the configuration that produced them.

A checkpoint stores the weights, the canonical JSON of the configuration and the training history, written
atomically. Loading checks the configuration, so changing a dataset, seed or recipe retrains instead of silently
loading weights that do not match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import atomic_torch_save
from .paths import checkpoint_dir, relative
from .train import History, seed_everything


def _canonical(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def save_checkpoint(path: os.PathLike | str, model: nn.Module, config: dict[str, Any],
                    history: History | None = None) -> Path:
    """Save weights, the configuration that produced them and the history, atomically."""
    payload = {"config": _canonical(config), "state_dict": model.state_dict(), "history": history or {}}
    return atomic_torch_save(payload, path)


def load_checkpoint(path: os.PathLike | str, model: nn.Module, config: dict[str, Any],
                    verbose: bool = True) -> History | None:
    """Load ``path`` into ``model`` if it exists, is readable and was made with ``config``.

    Returns the stored history, or ``None`` (with a message saying why) when the checkpoint can't be used.
    """
    path = Path(path)
    say = print if verbose else (lambda *a, **k: None)
    if not path.exists():
        say(f"No checkpoint at {relative(path)}: training from scratch.")
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        stored = payload["config"]
        state = payload["state_dict"]
    except Exception as e:  # noqa: BLE001 - any unreadable file counts as corrupt
        say(f"Checkpoint {relative(path)} is corrupt or unreadable ({type(e).__name__}): retraining.")
        return None
    if stored != _canonical(config):
        old, new = json.loads(stored), json.loads(_canonical(config))
        diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
        say(f"Checkpoint {relative(path)} was trained with another configuration {diff}: retraining.")
        return None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        say(f"Checkpoint {relative(path)} does not fit this model ({str(e).splitlines()[0]}): retraining.")
        return None
    say(f"Loaded checkpoint {relative(path)}.")
    return payload.get("history", {})


def train_or_load(name: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], History],
                  config: dict[str, Any], directory: os.PathLike | str | None = None, force: bool = False,
                  verbose: bool = True) -> tuple[nn.Module, History]:
    """Return a trained model named ``name``: loaded from its checkpoint when ``config`` matches, else trained.

    ``build()`` makes a fresh model (called after seeding with ``config["seed"]`` when present) and
    ``train(model)`` trains it and returns its history; the result is saved atomically for later notebooks.
    """
    path = Path(directory if directory is not None else checkpoint_dir()) / f"{name}.pt"
    if "seed" in config:
        seed_everything(int(config["seed"]))
    model = build()
    if not force:
        history = load_checkpoint(path, model, config, verbose)
        if history is not None:
            return model.eval(), history
    if "seed" in config:
        seed_everything(int(config["seed"]))
        model = build()
    history = train(model)
    save_checkpoint(path, model.cpu(), config, history)
    if verbose:
        print(f"Saved checkpoint {relative(path)}.")
    return model.eval(), history
