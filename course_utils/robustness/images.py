"""Pixel-space helpers shared by the corruptions and the OOD sets.

Loaders hold *standardized* images, ``(x01 - mean) / std``; corruptions are defined on pixels in [0, 1]. These
helpers move between the two and reshape foreign images (other sizes, grey vs colour) to a dataset's shape, so a
corrupted or OOD image goes through exactly the preprocessing of the in-distribution test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as TF


def check_batch(x: object, name: str = "x", unit_range: bool = True) -> torch.Tensor:
    """Raise ``ValueError`` unless ``x`` is a float tensor ``(N, C, H, W)`` with 1 or 3 channels (in [0, 1])."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have rank 4, (N, C, H, W); got shape {tuple(x.shape)} (rank {x.ndim}); "
                         f"use x.unsqueeze(0) for a single image")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels (dimension 1); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1]; got dtype {x.dtype}")
    if unit_range and x.numel() and (x.min() < -1e-4 or x.max() > 1 + 1e-4):
        raise ValueError(f"{name} must hold pixels in [0, 1]; got values in [{x.min():.3g}, {x.max():.3g}]. "
                         f"Standardized images must be un-standardized first (see corrupt_standardized)")
    return x


def _stats(values: Sequence[float], channels: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"{name} has {t.numel()} values but the images have {channels} channels")
    return t.view(1, channels, 1, 1)


def unstandardize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Standardized images back to pixels: ``x * std + mean`` per channel (not clipped)."""
    return x * _stats(std, x.shape[1], "std").to(x) + _stats(mean, x.shape[1], "mean").to(x)


def standardize(x01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Pixels in [0, 1] to the dataset's standardized scale, ``(x - mean) / std`` per channel."""
    return (x01 - _stats(mean, x01.shape[1], "mean").to(x01)) / _stats(std, x01.shape[1], "std").to(x01)


def fit_to_shape(x01: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resize (antialiased bilinear) and convert grey <-> RGB so ``x01`` has the per-image ``shape`` (C, H, W).

    RGB becomes grey by the ITU-R 601 luma weights (as torchvision's ``rgb_to_grayscale``); grey becomes RGB by
    repeating the channel.
    """
    c, h, w = (int(s) for s in shape)
    if c not in (1, 3):
        raise ValueError(f"shape={tuple(shape)} is not valid; the channel count must be 1 or 3")
    if x01.shape[-2:] != (h, w):
        x01 = TF.resize(x01, [h, w], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    if x01.shape[1] == 3 and c == 1:
        x01 = TF.rgb_to_grayscale(x01, num_output_channels=1)
    elif x01.shape[1] == 1 and c == 3:
        x01 = x01.expand(-1, 3, -1, -1)
    return x01.clamp(0, 1).contiguous()
