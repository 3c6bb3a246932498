"""Corrupted copies of a dataset's test set, standardized like the clean one and cached once per key.

The clean images are exactly those of ``get_data(dataset, test_subset=size, seed=seed).test_loader`` in order (so
in smoke mode, ``size=256`` matches the notebook's loader); they are un-standardized with the dataset's mean/std,
corrupted in [0, 1], clipped, stored as uint8, and re-standardized on load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..data import DatasetInfo, get_data, stack_loader
from .cache import cached, pack_pixels, unpack_pixels
from .corruptions import CORRUPTIONS, SEVERITIES, VERSION, check_corruption, corrupt
from .images import standardize, unstandardize


def clean_test_set(dataset: str = "mnist_5k", size: int | None = None, seed: int = 0,
                   root: os.PathLike | str | None = None, download: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, DatasetInfo]:
    """Standardized test images, labels and dataset info: the test loader of ``get_data`` stacked.

    Memoized per argument set (loading a dataset takes seconds; a sweep asks for the same one 90 times).
    """
    x, y, info = _clean(dataset, size, seed, None if root is None else str(root), download)
    return x.clone(), y.clone(), replace(info)  # copies: callers may change them, the memo must not


@lru_cache(maxsize=4)
def _clean(dataset: str, size: int | None, seed: int, root: str | None, download: bool
           ) -> tuple[torch.Tensor, torch.Tensor, DatasetInfo]:
    bundle = get_data(dataset, test_subset=size, seed=seed, root=root, download=download)
    x, y = stack_loader(bundle.test_loader)
    return x, y, bundle.info


def corrupted_test_set(dataset: str = "mnist_5k", corruption: str = "shot_noise", severity: int = 1,
                       seed: int = 0, size: int | None = None, root: os.PathLike | str | None = None,
                       download: bool = False, cache: bool = True) -> TensorDataset:
    """The test set of ``dataset`` under ``corruption`` at ``severity`` (0 = clean), standardized, with labels.

    Cached in ``<checkpoints>/robustness/corrupted/`` per (dataset, corruption, severity, seed, size);
    ``cache=False`` recomputes without touching the disk.
    """
    check_corruption(corruption, severity)
    if severity == 0:
        x, y, _ = clean_test_set(dataset, size, seed, root, download)
        return TensorDataset(x, y)
    key = {"dataset": dataset, "corruption": corruption, "severity": severity, "seed": seed,
           "size": "all" if size is None else size, "version": VERSION}

    def build() -> dict[str, object]:  # only on a cache miss: a hit never loads the dataset
        x, y, info = clean_test_set(dataset, size, seed, root, download)
        pixels = unstandardize(x, info.mean, info.std).clamp(0, 1)
        return {"x": pack_pixels(corrupt(pixels, corruption, severity, seed)), "y": y,
                "mean": list(info.mean), "std": list(info.std)}

    payload = cached("corrupted", key, build, use_cache=cache)
    return TensorDataset(standardize(unpack_pixels(payload["x"]), payload["mean"], payload["std"]), payload["y"])


def corrupted_loader(dataset: str = "mnist_5k", corruption: str = "shot_noise", severity: int = 1,
                     seed: int = 0, size: int | None = None, batch_size: int = 256, **kwargs) -> DataLoader:
    """``corrupted_test_set`` in a loader that keeps the order (for accuracy and prediction agreement)."""
    return DataLoader(corrupted_test_set(dataset, corruption, severity, seed, size, **kwargs),
                      batch_size=batch_size, shuffle=False)


def build_corrupted_sets(dataset: str = "mnist_5k", corruptions: Iterable[str] = CORRUPTIONS,
                         severities: Iterable[int] = SEVERITIES, seed: int = 0, size: int | None = None,
                         **kwargs) -> dict[str, float]:
    """Fill the cache for every (corruption, severity); returns the seconds spent per corruption."""
    timings: dict[str, float] = {}
    for c in corruptions:
        start = time.perf_counter()
        for s in severities:
            corrupted_test_set(dataset, c, s, seed, size, **kwargs)
        timings[c] = time.perf_counter() - start
    return timings
