"""Checkpoints shared between notebooks: trained once, keyed by the configuration that produced them.

A checkpoint stores the weights, the canonical JSON of the configuration and the training history, written
atomically. Loading checks all three, so changing a dataset, seed or recipe, or a damaged or foreign file, retrains
(saying why) instead of loading weights that do not match or crashing later. ``train_or_load`` checks where it will
save *before* training, and if saving still fails afterwards it keeps the trained model rather than losing it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import single_thread
from .paths import check_path, checkpoint_path, display_path, relative
from .storage import CheckpointNotSavedWarning, OutputPathError, atomic_torch_save, ensure_writable_dir
from .train import History, seed_everything


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    return model


def _check_config(config: Any) -> Mapping[str, Any]:
    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        raise ValueError(f"config must be a dict with str keys, not {type(config).__name__}")
    return config


def history_problem(history: Any) -> str | None:
    """Why ``history`` is not a usable training history (a non-empty dict of str -> list of numbers), or None."""
    if not isinstance(history, Mapping):
        return f"its history is a {type(history).__name__}, not a dict"
    if not history:
        return "it has no training history"
    for k, v in history.items():
        if not isinstance(k, str) or not isinstance(v, (list, tuple)) \
                or not all(isinstance(x, numbers.Real) for x in v):
            return f"its history entry {k!r} is not a list of numbers"
    return None


def save_checkpoint(path: os.PathLike | str, model: nn.Module, config: dict[str, Any],
                    history: History | None = None) -> Path:
    """Save weights, the configuration that produced them and the history, atomically.

    A checkpoint saved without a history is kept, but ``load_checkpoint`` will not use it (it retrains).
    """
    path = check_path("path", path)
    _check_model(model)
    _check_config(config)
    if history is not None and not isinstance(history, Mapping):
        raise ValueError(f"history must be a dict of lists or None, not {type(history).__name__}")
    payload = {"config": _canonical(config), "state_dict": model.state_dict(), "history": dict(history or {})}
    return atomic_torch_save(payload, path)


def _problem(payload: Any, config: Mapping[str, Any]) -> str | None:
    """Why a loaded payload cannot be used with ``config`` (checked before touching the model), or None."""
    if not isinstance(payload, dict):
        return f"it is not a checkpoint (it holds a {type(payload).__name__}, not a dict)"
    stored = payload.get("config")
    if not isinstance(stored, str):
        return f"its configuration is a {type(stored).__name__}, not JSON text"
    try:
        old = json.loads(stored)
    except json.JSONDecodeError:
        return "its configuration is not valid JSON"
    if not isinstance(old, dict):
        return "its configuration is not a JSON object"
    if stored != _canonical(config):
        new = json.loads(_canonical(config))
        diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
        return f"it was trained with another configuration {diff}"
    state = payload.get("state_dict")
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        return f"its weights are a {type(state).__name__}, not a state dict"
    return history_problem(payload.get("history"))


def load_checkpoint(path: os.PathLike | str, model: nn.Module, config: dict[str, Any],
                    verbose: bool = True) -> History | None:
    """Load ``path`` into ``model`` if it exists, is readable, is complete and was made with ``config``.

    Returns the stored history, or ``None`` (with a message saying why) when the checkpoint can't be used; the model
    is then left as it was.
    """
    path = check_path("path", path)
    _check_model(model)
    _check_config(config)
    if not isinstance(verbose, bool):
        raise ValueError(f"verbose={verbose!r} is not valid; it must be True or False")
    say = print if verbose else (lambda *a, **k: None)
    if not path.exists():
        say(f"No checkpoint at {relative(path)}: training from scratch.")
        return None
    if path.is_dir():
        say(f"Checkpoint path {relative(path)} is a folder, not a file: training from scratch.")
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file counts as corrupt
        say(f"Checkpoint {relative(path)} is corrupt or unreadable ({type(e).__name__}): retraining.")
        return None
    problem = _problem(payload, config)
    if problem is not None:
        say(f"Checkpoint {relative(path)} is not usable: {problem}: retraining.")
        return None
    backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        model.load_state_dict(backup)  # a failed load may have copied some tensors already
        say(f"Checkpoint {relative(path)} does not fit this model ({str(e).splitlines()[0]}): retraining.")
        return None
    say(f"Loaded checkpoint {relative(path)}.")
    return {k: list(v) for k, v in payload["history"].items()}


def is_cached(name: str, config: dict[str, Any], directory: os.PathLike | str | None = None) -> bool:
    """Whether ``train_or_load(name, ..., config)`` would load instead of train (the weights' shapes are checked
    when it loads). Lets a caller send only the missing trainings to ``parallel.run``."""
    path = checkpoint_path(name, directory)
    _check_config(config)
    if not path.is_file():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: train_or_load will retrain it
        return False
    return _problem(payload, config) is None


def check_checkpoint_target(path: os.PathLike | str) -> Path:
    """Raise ``OutputPathError`` naming the path unless a checkpoint can be written at ``path``."""
    path = check_path("path", path)
    ensure_writable_dir(path.parent, "checkpoint folder")
    if path.is_dir():
        raise OutputPathError(f"checkpoint path {display_path(path)} is a folder, not a file; remove it or rename it")
    return path


def _seed(config: Mapping[str, Any]) -> int | None:
    if "seed" not in config:
        return None
    seed = config["seed"]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        if not (isinstance(seed, float) and math.isfinite(seed) and seed.is_integer()):
            raise ValueError(f"config['seed']={seed!r} is not valid; it must be an integer")
    return int(seed)


def train_or_load(name: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], History],
                  config: dict[str, Any], directory: os.PathLike | str | None = None, force: bool = False,
                  verbose: bool = True) -> tuple[nn.Module, History]:
    """Return a trained model named ``name``: loaded from its checkpoint when ``config`` matches, else trained.

    ``build()`` makes a fresh model (called after seeding with ``config["seed"]`` when present) and
    ``train(model)`` trains it, single-threaded, and returns its history; the result is saved atomically for later
    notebooks. One thread makes a checkpoint the same whether this process or a worker of ``parallel.run`` trains
    it, on any machine with the same CPU and libraries.
    Before training, the checkpoint folder is checked (``OutputPathError`` naming it if unusable); if the save fails
    anyway, a ``CheckpointNotSavedWarning`` says where and the trained model is still returned.
    """
    path = checkpoint_path(name, directory)
    if not callable(build) or not callable(train):
        raise ValueError("build and train must be callables: build() -> model, train(model) -> history")
    _check_config(config)
    seed = _seed(config)
    for flag, value in (("force", force), ("verbose", verbose)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag}={value!r} is not valid; it must be True or False")
    if seed is not None:
        seed_everything(seed)
    model = _check_model(build())
    if not force:
        history = load_checkpoint(path, model, config, verbose)
        if history is not None:
            return model.eval(), history
    check_checkpoint_target(path)  # fail now, not after minutes of training
    if seed is not None:
        seed_everything(seed)
        model = _check_model(build())
    with single_thread():  # a checkpoint's numbers must not depend on where it was trained (see parallel.run)
        history = train(model)
    if not isinstance(history, Mapping):
        raise ValueError(f"train(model) must return the training history (a dict), not {type(history).__name__}")
    try:
        save_checkpoint(path, model.cpu(), config, history)
    except OSError as e:  # a full disk included: atomic_torch_save turns torch's RuntimeError into OutputPathError
        warnings.warn(f"could not save checkpoint {display_path(path)}: it was NOT saved ({e}). The trained model "
                      f"is kept in memory for this run only, so later runs will train it again",
                      CheckpointNotSavedWarning, stacklevel=2)
        return model.eval(), history
    if verbose:
        print(f"Saved checkpoint {relative(path)}.")
    return model.eval(), history
