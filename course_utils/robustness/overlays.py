"""Corruptions that draw over the digit: fog, spatter, dotted lines, zigzags, and Canny edges.

Definitions follow MNIST-C (Mu & Gilmer 2019); MNIST-C gives dotted lines, zigzags and Canny edges a single
strength, so their severity ladders here add more lines (the first ``s`` are the same at every severity) or blend
towards the pure edge map (the top severity is MNIST-C's). Batches are pixels in [0, 1], shape (N, C, H, W).
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from scipy import ndimage
from skimage import feature

#: Lines and zigzags drawn at the top severity; lower severities draw the first ones of the same set.
MAX_LINES = 5
#: Mud colour of spatter: MNIST-C's grey 63/255, ImageNet-C's brown (63, 42, 20)/255 for RGB.
MUD_GREY, MUD_RGB = (63 / 255,), (63 / 255, 42 / 255, 20 / 255)


def plasma_fractal(rng: np.random.Generator, n: int, size: int = 256, decay: float = 3.0) -> np.ndarray:
    """``n`` fractal height maps (``n, size, size``) in [0, 1] by the diamond-square algorithm, on a torus.

    Each octave sets the centre of every square (square step), then the midpoint of every edge (diamond step)
    to the mean of its four neighbours plus uniform noise; the noise amplitude starts at 100**2 and falls by
    ``decay**2`` per octave (MNIST-C's "wibble"), so a smaller ``decay`` gives rougher fog.
    """
    if size & (size - 1):
        raise ValueError(f"size={size} is not valid; it must be a power of two")
    m = np.zeros((n, size, size), dtype=np.float32)
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        amp = np.float32(wibble * wibble)

        def noise(shape: tuple[int, ...], amp: np.float32 = amp) -> np.ndarray:
            return (rng.random(shape, dtype=np.float32) * 2 - 1) * amp
        corners = m[:, ::step, ::step]
        centres = (corners + np.roll(corners, -1, 1) + np.roll(corners, -1, 2)
                   + np.roll(np.roll(corners, -1, 1), -1, 2)) / 4
        centres = centres + noise(centres.shape)
        m[:, half::step, half::step] = centres
        across = (corners + np.roll(corners, -1, 2) + centres + np.roll(centres, 1, 1)) / 4
        m[:, ::step, half::step] = across + noise(across.shape)
        down = (corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 2)) / 4
        m[:, half::step, ::step] = down + noise(down.shape)
        step, wibble = half, wibble / decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def fog(x: torch.Tensor, params: tuple[float, float], rng: np.random.Generator) -> torch.Tensor:
    """Add ``strength`` times a plasma fractal, then rescale so the brightest pixel keeps its value.

    ``params = (strength, decay)``; the fractal is the top-left crop of a 256 x 256 map, as in MNIST-C.
    """
    strength, decay = params
    n, _, h, w = x.shape
    size = max(256, 1 << (max(h, w) - 1).bit_length())
    maps = np.concatenate([plasma_fractal(rng, min(64, n - i), size, decay)[:, :h, :w] for i in range(0, n, 64)])
    haze = torch.from_numpy(maps).float().unsqueeze(1)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * haze) * peak / (peak + strength)


def spatter(x: torch.Tensor, params: tuple[float, ...], rng: np.random.Generator) -> torch.Tensor:
    """Mud splashes: blurred Gaussian noise thresholded into blobs that cover the image in a mud colour.

    ``params = (loc, scale, sigma, threshold, edge_sigma)`` as MNIST-C's mud branch.
    """
    loc, spread, sigma, threshold, edge_sigma = params[:5]
    n, c, h, w = x.shape
    liquid = ndimage.gaussian_filter(rng.normal(loc, spread, size=(n, h, w)), (0, sigma, sigma), mode="nearest")
    blobs = ndimage.gaussian_filter((liquid > threshold).astype(np.float64), (0, edge_sigma, edge_sigma),
                                    mode="nearest")
    blobs[blobs < 0.8] = 0
    m = torch.from_numpy(blobs).float().unsqueeze(1)
    mud = torch.tensor(MUD_GREY if c == 1 else MUD_RGB).view(1, c, 1, 1)
    return x * (1 - m) + mud * m


def line_maps(c0: np.ndarray, r0: np.ndarray, c1: np.ndarray, r1: np.ndarray, h: int, w: int) -> np.ndarray:
    """Anti-aliased line segments, one map per row of the endpoint arrays (shape ``n, h, w``).

    As MNIST-C's ``line_from_points``: intensity ``log(1 - d / 2.3) + 1`` at vertical distance ``d`` from the
    line (so about 1.5 px each side), zero outside the columns ``floor(c0) .. ceil(c1)``; vertical
    segments draw nothing.
    """
    c0, r0, c1, r1 = (np.asarray(v, dtype=np.float64).reshape(-1, 1, 1) for v in (c0, r0, c1, r1))
    cols, rows = np.arange(w).reshape(1, 1, w), np.arange(h).reshape(1, h, 1)
    width = c1 - c0
    slope = (r1 - r0) / np.where(width == 0, 1.0, width)
    d = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0, 2.3 - 1e-10)
    m = np.clip(np.log(1 - d / 2.3) + 1, 0, 1)
    m = m * ((cols >= np.floor(c0)) & (cols < np.ceil(c1))) * (width != 0)
    return m


def _add_maps(x: torch.Tensor, maps: np.ndarray) -> torch.Tensor:
    return x + torch.from_numpy(maps).float().unsqueeze(1)


def dotted_line(x: torch.Tensor, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` dashed lines across the image (2 px on, 2 px off) between random rows at both edges."""
    n, _, h, w = x.shape
    ends = rng.integers(0, h - 1, size=(MAX_LINES, 2, n))
    dashes = (np.arange(w) // 2) % 2 == 1
    total = np.zeros((n, h, w))
    for r0, r1 in ends[:count]:
        total += line_maps(np.zeros(n), r0, np.full(n, w - 1.0), r1, h, w) * dashes
    return _add_maps(x, total)


def _zigzag_points(r0: np.ndarray, r1: np.ndarray, c0: float, c1: float, a: float = 2.0,
                   b: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (cols, rows), each ``(n, k)``, of a zigzag of tooth length ``a`` and height ``b`` from
    ``(c0, r0)`` towards ``(c1, r1)``: peaks at ``(2i + 1) a`` alternately ``+b`` and ``-b`` off the line."""
    theta = np.arctan((r1 - r0) / (c1 - c0))
    length = (c1 - c0) / np.cos(theta)
    teeth = int((c1 - c0 - a) // (2 * a)) + 1
    along = np.concatenate([[0.0], (2 * np.arange(teeth) + 1) * a])
    off = np.concatenate([[0.0], b * (-1.0) ** np.arange(teeth)])
    along = np.concatenate([np.broadcast_to(along, (len(r0), teeth + 1)), length[:, None]], axis=1)
    off = np.concatenate([np.broadcast_to(off, (len(r0), teeth + 1)), np.zeros((len(r0), 1))], axis=1)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    return c0 + cos * along - sin * off, r0[:, None] + sin * along + cos * off


def zigzag(x: torch.Tensor, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` zigzag lines, each starting at a random row and drifting by up to 5 rows (MNIST-C draws one)."""
    n, _, h, w = x.shape
    starts = rng.integers(0, h - 1, size=(MAX_LINES, n)).astype(np.float64)
    drifts = rng.integers(-5, 5, size=(MAX_LINES, n))
    total = np.zeros((n, h, w))
    for r0, dr in zip(starts[:count], drifts[:count]):
        cs, rs = _zigzag_points(r0, r0 + dr, 2.0, w - 3.0)
        for j in range(cs.shape[1] - 1):
            total += line_maps(cs[:, j], rs[:, j], cs[:, j + 1], rs[:, j + 1], h, w)
    return _add_maps(x, np.minimum(total, 1.0))


def canny_edges(x: torch.Tensor, mix: float, rng: np.random.Generator) -> torch.Tensor:
    """Blend towards the binary Canny edge map (sigma 1, skimage's default thresholds): ``max(edges, (1 - mix)
    x)``; ``mix = 1`` is MNIST-C's corruption, which keeps only the outline of the strokes."""
    grey = TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x
    edges = np.stack([feature.canny(img) for img in grey[:, 0].double().numpy()])
    e = torch.from_numpy(edges).float().unsqueeze(1)
    return torch.maximum(e.expand_as(x), (1 - mix) * x)
