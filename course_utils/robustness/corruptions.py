"""An MNIST-C style corruption suite for batches of images in [0, 1], shape (N, C, H, W), 1 or 3 channels.

After Mu & Gilmer (2019), "MNIST-C: A Robustness Benchmark for Computer Vision" (arXiv:1906.02337), which adapts
Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations".
MNIST-C publishes one strength per corruption; here each has a ladder of ``MAX_SEVERITY`` severities taken from
the parameter lists in MNIST-C's code where it has them (``MNISTC_SEVERITY`` marks the strength MNIST-C
published). Severity 0 is the clean image.

Randomness: one NumPy generator per call, seeded by ``(seed, corruption)`` and *not* by the severity, so the
random choices (directions, line positions, noise draws) are shared along a ladder and severities differ only in
strength. The draws depend on the batch, so corrupt a whole test set at once (``corrupted_data`` does).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import geometry as geo
from . import overlays as ovl
from . import pixel_ops as pix
from .images import check_batch, standardize, unstandardize

Op = Callable[[torch.Tensor, Any, np.random.Generator], torch.Tensor]
MAX_SEVERITY = 5
SEVERITIES: tuple[int, ...] = tuple(range(1, MAX_SEVERITY + 1))

#: name -> (function, parameter per severity 1..5, uses randomness)
_SPECS: dict[str, tuple[Op, tuple[Any, ...], bool]] = {
    "gaussian_noise": (pix.gaussian_noise, (0.08, 0.12, 0.18, 0.26, 0.38), True),
    "shot_noise": (pix.shot_noise, (60, 25, 12, 5, 3), True),
    "impulse_noise": (pix.impulse_noise, (0.03, 0.06, 0.09, 0.17, 0.27), True),
    "gaussian_blur": (pix.gaussian_blur, (1, 2, 3, 4, 6), False),
    "glass_blur": (pix.glass_blur, ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)), True),
    "motion_blur": (geo.motion_blur, ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), True),
    "rotate": (geo.rotate, (0.2, 0.4, 0.6, 0.8, 1.0), True),
    "shear": (geo.shear, (0.2, 0.4, 0.6, 0.8, 1.0), True),
    "scale": (geo.scale, (0.9, 0.8, 0.7, 0.6, 0.5), False),
    "translate": (geo.translate, (1, 2, 3, 4, 5), True),
    "brightness": (pix.brightness, (0.1, 0.2, 0.3, 0.4, 0.5), False),
    "contrast": (pix.contrast, (0.4, 0.3, 0.2, 0.1, 0.05), False),
    "stripe": (pix.stripe, (1 / 28, 3 / 28, 4 / 28, 6 / 28, 7 / 28), False),
    # MNIST-C's fog ladder, but severity 4 is (2.75, 1.5), not (2.5, 1.5): that one is no farther from the clean
    # image than severity 3
    "fog": (ovl.fog, ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.75, 1.5), (3.0, 1.4)), True),
    # MNIST-C's five spatter settings sorted by the area they cover (about 9, 13, 17, 21, 25%); its code's
    # order (from ImageNet-C, whose severities 1-3 were water, not mud) is not monotone
    "spatter": (ovl.spatter, ((0.65, 0.3, 4, 0.69, 0.6), (0.65, 0.3, 1, 0.65, 1.5), (0.65, 0.3, 3, 0.68, 0.6),
                              (0.67, 0.4, 1, 0.65, 1.5), (0.65, 0.3, 2, 0.68, 0.5)), True),
    "dotted_line": (ovl.dotted_line, (1, 2, 3, 4, 5), True),
    "zigzag": (ovl.zigzag, (1, 2, 3, 4, 5), True),
    "canny_edges": (ovl.canny_edges, (0.2, 0.4, 0.6, 0.8, 1.0), False),
}
CORRUPTIONS: tuple[str, ...] = tuple(_SPECS)
#: Corruptions whose result depends on the seed.
RANDOM_CORRUPTIONS: tuple[str, ...] = tuple(k for k, v in _SPECS.items() if v[2])
#: The severity on this ladder that MNIST-C's published dataset uses (the defaults of its code); the corruptions
#: not listed (Gaussian noise and blur, contrast) are not among MNIST-C's final 15.
MNISTC_SEVERITY: dict[str, int] = {
    "shot_noise": 5, "impulse_noise": 4, "glass_blur": 1, "motion_blur": 1, "shear": 2, "scale": 3, "rotate": 2,
    "brightness": 5, "translate": 3, "stripe": 5, "fog": 5, "spatter": 2, "dotted_line": 1, "zigzag": 1,
    "canny_edges": 5,
}
#: Corruptions grouped by kind, for tables and figures.
FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("gaussian_blur", "glass_blur", "motion_blur"),
    "geometric": ("rotate", "shear", "scale", "translate"),
    "photometric": ("brightness", "contrast", "stripe", "fog"),
    "overlay": ("spatter", "dotted_line", "zigzag", "canny_edges"),
}
#: Bump when a definition changes: it is part of every cache key, so stale cached sets are never read.
VERSION = 1


def check_corruption(corruption: str, severity: int, allow_zero: bool = True) -> None:
    """Raise ``ValueError`` naming the allowed values unless ``corruption`` and ``severity`` are valid."""
    if corruption not in _SPECS:
        raise ValueError(f"corruption={corruption!r} is not valid; choose one of {list(CORRUPTIONS)}")
    low = 0 if allow_zero else 1
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not low <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity={severity!r} is not valid; it must be an integer from {low} to {MAX_SEVERITY}"
                         + (" (0 = clean)" if allow_zero else ""))


def corruption_params(corruption: str, severity: int) -> Any:
    """The parameter that ``severity`` (1..5) gives ``corruption``, e.g. ``("rotate", 2) -> 0.4`` radians."""
    check_corruption(corruption, severity, allow_zero=False)
    return _SPECS[corruption][1][severity - 1]


def corruption_rng(corruption: str, seed: int) -> np.random.Generator:
    """The generator a call uses: seeded by ``seed`` and a stable hash of the name, never by the severity."""
    return np.random.default_rng([int(seed), zlib.crc32(corruption.encode())])


def corrupt(x: torch.Tensor, corruption: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupted copy of the batch ``x`` (pixels in [0, 1], shape (N, C, H, W)), clipped to [0, 1].

    The result has the dtype and device of ``x``; severity 0 returns a copy of ``x``.
    """
    check_corruption(corruption, severity)
    check_batch(x)
    if severity == 0 or len(x) == 0:
        return x.clone()
    fn, params, _ = _SPECS[corruption]
    x32 = x.detach().to("cpu", torch.float32)
    out = fn(x32, params[severity - 1], corruption_rng(corruption, seed))
    return out.clamp_(0, 1).to(device=x.device, dtype=x.dtype)


def corrupt_standardized(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], corruption: str,
                         severity: int, seed: int = 0) -> torch.Tensor:
    """``corrupt`` for standardized images: un-standardize, clip to [0, 1], corrupt, re-standardize.

    The clip matters: a standardized image mapped back can leave [0, 1] by rounding.
    """
    check_batch(x, unit_range=False)
    pixels = unstandardize(x, mean, std).clamp(0, 1)
    return standardize(corrupt(pixels, corruption, severity, seed), mean, std)


def corruption_ladder(x: torch.Tensor, corruption: str, severities: Sequence[int] = (0, *SEVERITIES),
                      seed: int = 0) -> torch.Tensor:
    """The batch at every severity, stacked as ``(len(severities), N, C, H, W)`` (for figures and checks)."""
    return torch.stack([corrupt(x, corruption, s, seed) for s in severities])
