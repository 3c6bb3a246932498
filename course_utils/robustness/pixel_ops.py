"""Noise, blur and photometric corruptions on batches of pixels in [0, 1], shape (N, C, H, W).

Definitions follow MNIST-C (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer Vision", itself built
on Hendrycks & Dietterich 2019's ImageNet-C), rewritten for batched tensors: the original code needs Wand,
OpenCV and APIs that no longer exist. Every function takes the batch, its severity parameter and a NumPy
``Generator``, and returns a new float32 batch; clipping to [0, 1] happens once, in ``corruptions.corrupt``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32, copy=True)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the two spatial axes only, edges replicated (skimage.filters.gaussian's defaults)."""
    return ndimage.gaussian_filter(a, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)


def gaussian_noise(x: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Additive white noise of standard deviation ``sigma`` (ImageNet-C; not in MNIST-C's final 15)."""
    return torch.from_numpy(_np(x) + rng.normal(0.0, sigma, size=x.shape).astype(np.float32))


def shot_noise(x: torch.Tensor, photons: float, rng: np.random.Generator) -> torch.Tensor:
    """Photon (Poisson) noise, ``poisson(photons * x) / photons``: fewer photons, noisier (MNIST-C uses 3)."""
    return torch.from_numpy((rng.poisson(_np(x) * photons) / photons).astype(np.float32))


def impulse_noise(x: torch.Tensor, amount: float, rng: np.random.Generator) -> torch.Tensor:
    """Salt and pepper: a fraction ``amount`` of the values (each channel on its own) set to 0 or 1, half each."""
    a = _np(x)
    hit = rng.random(a.shape) < amount
    salt = rng.random(a.shape) < 0.5
    a[hit & salt] = 1.0
    a[hit & ~salt] = 0.0
    return torch.from_numpy(a)


def gaussian_blur(x: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (deterministic)."""
    return torch.from_numpy(_blur(_np(x), sigma))


def glass_blur(x: torch.Tensor, params: tuple[float, int, int], rng: np.random.Generator) -> torch.Tensor:
    """Blur, then shuffle pixels locally, then blur again, like frosted glass.

    ``params = (sigma, max_delta, iterations)``. As in MNIST-C, the shuffle walks the interior pixels from the
    bottom-right corner and swaps each, with probability 1/2, with a pixel up to ``max_delta`` away (MNIST-C draws
    offsets in [-d, d), here [-d, d]); the walk is sequential (a pixel can move several times) and is vectorized
    over the images of the batch.
    """
    sigma, delta, iterations = params
    a = _blur(_np(x), sigma)
    n, _, h, w = a.shape
    rows = range(h - delta - 1, delta - 1, -1)
    cols = range(w - delta - 1, delta - 1, -1)
    steps = iterations * len(rows) * len(cols)
    swap = rng.random((steps, n)) < 0.5
    offsets = rng.integers(-delta, delta + 1, size=(steps, 2, n))
    step = 0
    for _ in range(iterations):
        for r in rows:
            for c in cols:
                idx = np.flatnonzero(swap[step])
                r2, c2 = r + offsets[step, 0, idx], c + offsets[step, 1, idx]
                here = a[idx, :, r, c]
                a[idx, :, r, c] = a[idx, :, r2, c2]
                a[idx, :, r2, c2] = here
                step += 1
    return torch.from_numpy(_blur(a, sigma))


def brightness(x: torch.Tensor, shift: float, rng: np.random.Generator) -> torch.Tensor:
    """Add ``shift`` to the value channel in HSV (hue and saturation kept); on grey images, ``x + shift``.

    With hue and saturation fixed, RGB is proportional to V, so the channels are rescaled by V'/V; black pixels
    (V = 0, saturation 0 by convention) become grey V'.
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + shift).clamp(0, 1)
    ratio = torch.where(v > 0, v_new / v.clamp_min(1e-12), torch.zeros_like(v))
    return torch.where(v > 0, x * ratio, v_new.expand_as(x))


def contrast(x: torch.Tensor, factor: float, rng: np.random.Generator) -> torch.Tensor:
    """Pull every pixel towards its image's mean (per channel) by ``factor`` (smaller = less contrast)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


def stripe(x: torch.Tensor, fraction: float, rng: np.random.Generator) -> torch.Tensor:
    """Invert (``1 - x``) the ``fraction * W`` left-most and right-most columns; MNIST-C inverts 7 of 28 (1/4)."""
    k = max(1, int(round(fraction * x.shape[-1])))
    out = x.clone()
    out[..., :k] = 1 - out[..., :k]
    out[..., -k:] = 1 - out[..., -k:]
    return out
