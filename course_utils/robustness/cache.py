"""One cached file per derived test set (a corrupted copy, an OOD set), under ``checkpoint_dir()/robustness``.

Sets are stored in pixel space as uint8 (as MNIST-C distributes its images), zlib-compressed (a third of the size
for digits), and standardized on load, so one file serves every dataset of the same shape. A file records its key
and is rebuilt when the key differs (e.g. after ``corruptions.VERSION`` changes); writes are atomic, so an
interrupted notebook never leaves half a file for the next one to read.
"""

from __future__ import annotations

import pickle
import re
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..paths import checkpoint_dir
from ..storage import atomic_torch_save


def cache_dir() -> Path:
    """``<checkpoints>/robustness`` (moved with ``COURSE_CHECKPOINT_DIR``)."""
    return checkpoint_dir() / "robustness"


def cache_file(kind: str, key: Mapping[str, Any]) -> Path:
    """File for ``key``: every key value appears in the name, so different keys never share a file."""
    parts = [f"{k}={v}" for k, v in key.items()]
    name = re.sub(r"[^A-Za-z0-9_.=,-]", "_", ",".join(parts))
    return cache_dir() / kind / f"{name}.pt"


def pack_pixels(x01: torch.Tensor) -> dict[str, Any]:
    """Pixels in [0, 1] as rounded uint8 bytes, zlib-compressed, plus the shape to restore them."""
    raw = (x01.clamp(0, 1) * 255).round().to(torch.uint8).contiguous().numpy().tobytes()
    return {"shape": list(x01.shape), "zlib": torch.frombuffer(bytearray(zlib.compress(raw, 6)), dtype=torch.uint8)}


def unpack_pixels(packed: Mapping[str, Any]) -> torch.Tensor:
    """``pack_pixels`` undone: float32 pixels in [0, 1]."""
    raw = bytearray(zlib.decompress(packed["zlib"].numpy().tobytes()))
    return torch.frombuffer(raw, dtype=torch.uint8).reshape(packed["shape"]).float() / 255


def cached(kind: str, key: Mapping[str, Any], build: Callable[[], dict[str, Any]], use_cache: bool = True
           ) -> dict[str, Any]:
    """``build()`` once per ``key``: later calls read the file. ``use_cache=False`` neither reads nor writes."""
    if not use_cache:
        return build()
    path = cache_file(kind, key)
    if path.exists():
        try:
            payload = torch.load(path, weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError):  # unreadable: truncated, foreign...
            payload = None
        if isinstance(payload, dict) and payload.get("key") == dict(key):
            return payload
    payload = {**build(), "key": dict(key)}
    atomic_torch_save(payload, path)
    return payload
