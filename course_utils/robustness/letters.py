"""Near-OOD for digit classifiers: letters rendered from the fonts that ship with matplotlib, the MNIST way.

MNIST's recipe (LeCun et al. 1998): the glyph is scaled to fit a 20 x 20 box keeping its aspect ratio
(anti-aliased), then placed in a 28 x 28 image with its centre of mass at the centre. Before that, each sample
gets a small random change of stroke thickness, rotation, shear and aspect ratio, so the set is not 32 clean
glyphs repeated. Letters that a digit classifier could fairly call a digit are left out (``EXCLUDED``), so a
confident prediction on this set is an error of the detector, not of the label.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.ft2font import FT2Font
from scipy import ndimage
from skimage.transform import resize

#: Fonts of matplotlib's own distribution: DejaVu (sans, serif, mono), STIX, and Computer Modern (BaKoMa).
FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf", "cmti10.ttf", "cmb10.ttf", "cmtt10.ttf",
)
#: Letters left out, with the digit each can pass for.
EXCLUDED: dict[str, str] = {
    "O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "i": "1", "j": "1", "J": "1 or 7", "T": "7",
    "Z": "2", "z": "2", "S": "5", "s": "5", "G": "6", "b": "6", "B": "8", "g": "9", "q": "9", "d": "a mirrored 6",
}
#: The letters drawn (16 capitals, 16 lower case).
LETTERS: str = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in EXCLUDED)
#: Glyph height (pixels) the fonts are rendered at, before the MNIST framing brings them down to 20.
RENDER_PX = 64


def _font_path(name: str) -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


@cache
def glyph(font: str, char: str) -> np.ndarray | None:
    """The anti-aliased glyph of ``char`` in ``font`` as floats in [0, 1] (ink = 1), or None if it is missing
    (from the font, or the font from this matplotlib)."""
    if not _font_path(font).is_file():
        return None
    ft = FT2Font(str(_font_path(font)))
    if ft.get_char_index(ord(char)) == 0:
        return None
    ft.set_size(RENDER_PX, 72)
    ft.set_text(char)
    ft.draw_glyphs_to_bitmap(antialiased=True)
    img = np.asarray(ft.get_image(), dtype=np.float32) / 255
    return img if img.max() > 0 else None


def mnist_frame(img: np.ndarray, box: int = 20, size: int = 28) -> np.ndarray:
    """MNIST framing of a 2-d ink image in [0, 1]: crop to the ink, fit the longer side to ``box`` pixels
    (anti-aliased), and paste into ``size x size`` with the centre of mass at the centre."""
    rows, cols = np.flatnonzero(img.max(1) > 0.05), np.flatnonzero(img.max(0) > 0.05)
    if len(rows) == 0:
        return np.zeros((size, size), dtype=np.float32)
    img = img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    f = box / max(img.shape)
    h, w = max(1, round(img.shape[0] * f)), max(1, round(img.shape[1] * f))
    small = np.clip(resize(img, (h, w), order=1, anti_aliasing=True), 0, 1)
    out = np.zeros((size + 2 * box, size + 2 * box), dtype=np.float32)
    cy, cx = ndimage.center_of_mass(small)
    top, left = box + int(round((size - 1) / 2 - cy)), box + int(round((size - 1) / 2 - cx))
    out[top:top + h, left:left + w] = small
    return out[box:box + size, box:box + size]


def _distort(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random stroke thickness (dilation: fonts are thinner than pen strokes), rotation, shear, aspect ratio."""
    radius = int(rng.integers(0, 5))  # at RENDER_PX, each step widens a stroke by about 0.8 MNIST pixel
    if radius:
        yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
        img = ndimage.grey_dilation(img, footprint=xx**2 + yy**2 <= radius**2)
    theta, shear = np.deg2rad(rng.uniform(-15, 15)), np.tan(np.deg2rad(rng.uniform(-15, 15)))
    aspect = float(np.exp(rng.uniform(-0.2, 0.2)))
    # forward map in (row, col): widen columns by `aspect`, shear columns by rows, rotate by `theta`
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    forward = rot @ np.array([[1.0, 0.0], [shear, 1.0]]) @ np.diag([1.0, aspect])
    inverse = np.linalg.inv(forward)
    side = 2 * max(img.shape)
    centre_in, centre_out = (np.array(img.shape) - 1) / 2, np.full(2, (side - 1) / 2)
    out = ndimage.affine_transform(img, inverse, offset=centre_in - inverse @ centre_out, output_shape=(side, side),
                                   order=1, mode="constant", cval=0.0)
    return np.clip(out, 0, 1)


def render_letters(n: int, seed: int = 0, fonts: tuple[str, ...] = FONTS, letters: str = LETTERS
                   ) -> tuple[torch.Tensor, list[str]]:
    """``n`` letter images ``(n, 1, 28, 28)`` in [0, 1] and, per image, ``"<letter> <font>"``.

    Font and letter are drawn uniformly (pairs whose glyph is missing are skipped); deterministic in ``seed``.
    """
    bad = sorted(set(letters) & set(EXCLUDED))
    if bad:
        raise ValueError(f"letters={letters!r} contains {bad}, which pass for digits; use letters from {LETTERS!r}")
    pairs = [(f, c) for f in fonts for c in letters if glyph(f, c) is not None]
    if not pairs:
        raise ValueError(f"no glyph of letters={letters!r} in fonts={fonts}")
    rng = np.random.default_rng([int(seed), 7])
    picks = rng.integers(0, len(pairs), size=n)
    images = [mnist_frame(_distort(glyph(*pairs[i]), rng)) for i in picks]
    x = torch.from_numpy(np.stack(images)).unsqueeze(1) if images else torch.zeros(0, 1, 28, 28)
    return x.float(), [f"{pairs[i][1]} {pairs[i][0].removesuffix('.ttf')}" for i in picks]
