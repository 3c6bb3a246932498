"""Geometric corruptions and motion blur on batches of pixels in [0, 1], shape (N, C, H, W).

MNIST-C (Mu & Gilmer 2019) applies affine maps about the image centre with bilinear interpolation and black
fill; here torchvision's ``transforms.v2.functional.affine`` does the warping. A random direction (sign) is
drawn per image, so each call groups the images by direction and warps each group in one call.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

_BILINEAR = TF.InterpolationMode.BILINEAR


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=n)


def _affine(x: torch.Tensor, angle: float = 0.0, shear: float = 0.0, scale: float = 1.0,
            shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """torchvision's affine warp about the image centre (degrees), bilinear, black outside the image."""
    return TF.affine(x, angle=angle, translate=list(shift), scale=scale, shear=[shear, 0.0],
                     interpolation=_BILINEAR, fill=0.0)


def _by_sign(x: torch.Tensor, signs: np.ndarray, angle: float = 0.0, shear: float = 0.0) -> torch.Tensor:
    """Warp the images with sign +1 by (angle, shear) and those with sign -1 by (-angle, -shear)."""
    out = torch.empty_like(x)
    for s in (-1.0, 1.0):
        idx = torch.from_numpy(np.flatnonzero(signs == s))
        if len(idx):
            out[idx] = _affine(x[idx], angle=s * angle, shear=s * shear)
    return out


def rotate(x: torch.Tensor, radians: float, rng: np.random.Generator) -> torch.Tensor:
    """Rotate about the centre by ``radians`` (MNIST-C: 0.2 .. 1.0 rad), clockwise or not at random."""
    return _by_sign(x, _signs(rng, len(x)), angle=math.degrees(radians))


def shear(x: torch.Tensor, radians: float, rng: np.random.Generator) -> torch.Tensor:
    """Horizontal shear about the centre, ``x' = x + tan(radians) * y``, direction at random.

    The matrix of ``skimage.transform.AffineTransform(shear=radians)`` in scikit-image 0.26; MNIST-C ran an older
    scikit-image whose shear was parameterized slightly differently.
    """
    return _by_sign(x, _signs(rng, len(x)), shear=math.degrees(radians))


def scale(x: torch.Tensor, factor: float, rng: np.random.Generator) -> torch.Tensor:
    """Zoom out about the centre: the image shrinks to ``factor`` of its size (MNIST-C: 0.9 .. 0.5)."""
    return _affine(x, scale=factor)


def translate(x: torch.Tensor, pixels: int, rng: np.random.Generator) -> torch.Tensor:
    """Shift by ``pixels`` (at 28 px; scaled with the width) along both axes, each direction at random."""
    k = max(1, int(round(pixels * x.shape[-1] / 28)))
    sx, sy = _signs(rng, len(x)), _signs(rng, len(x))
    out = torch.empty_like(x)
    for a in (-1.0, 1.0):
        for b in (-1.0, 1.0):
            idx = torch.from_numpy(np.flatnonzero((sx == a) & (sy == b)))
            if len(idx):
                out[idx] = _affine(x[idx], shift=(int(a * k), int(b * k)))
    return out


def motion_blur(x: torch.Tensor, params: tuple[float, float], rng: np.random.Generator) -> torch.Tensor:
    """One-sided motion blur along a random direction in [-45, 45] degrees, like ImageMagick's ``-motion-blur``.

    ``params = (radius, sigma)`` in pixels (MNIST-C: (10, 3)): the output averages the image shifted by 0, 1, ..,
    2 * radius pixels along the direction with Gaussian weights ``exp(-k^2 / (2 sigma^2))`` (a line kernel);
    pixels beyond the border repeat the edge, as ImageMagick's default.
    """
    radius, sigma = params
    n, _, h, w = x.shape
    angle = np.deg2rad(rng.uniform(-45.0, 45.0, size=n))
    steps = torch.arange(0, 2 * int(radius) + 1, dtype=torch.float32)
    weights = torch.exp(-steps**2 / (2 * sigma**2))
    weights = weights / weights.sum()
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
    base = F.affine_grid(eye, [n, 1, h, w], align_corners=False)
    # one pixel along the direction, in affine_grid's normalized [-1, 1] coordinates
    unit = torch.from_numpy(np.stack([np.cos(angle) * 2 / w, np.sin(angle) * 2 / h], axis=1)).float()
    out = torch.zeros_like(x)
    for k, wk in zip(steps, weights):
        if wk < 1e-6:
            break
        grid = base + (k * unit).view(n, 1, 1, 2)
        out += wk * F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out
