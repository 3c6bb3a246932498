"""Out-of-distribution and covariate-shift test sets, offline, shaped and standardized like the training data.

- near-OOD: ``letters`` (see :mod:`.letters`); with ``download=True``, ``fashion_mnist`` and ``kmnist``;
- far-OOD: ``textures`` and ``photos`` (random crops of scikit-image's and scikit-learn's bundled images),
  ``gaussian_noise`` (pixels drawn with the dataset's own mean and std), ``uniform_noise``;
- covariate shift: ``digits_8x8``, scikit-learn's 8 x 8 digits framed like MNIST, *with* their labels: the
  same classes drawn differently, so it is scored by accuracy, not by an OOD detector.

``ood_set(name, info, n, seed)`` returns an :class:`OODSet`; images are converted to ``info.input_shape`` (grey
or RGB, resized) and standardized with ``info.mean`` / ``info.std``, exactly as the test set was.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..data import DatasetInfo
from ..paths import data_dir
from .cache import cached, pack_pixels, unpack_pixels
from .images import fit_to_shape, standardize
from .letters import mnist_frame, render_letters

#: name -> (kind, description)
OOD_SETS: dict[str, tuple[str, str]] = {
    "letters": ("near", "letters in matplotlib's fonts, framed like MNIST"),
    "fashion_mnist": ("near", "Fashion-MNIST test images (torchvision, download=True)"),
    "kmnist": ("near", "Kuzushiji-MNIST test images (torchvision, download=True)"),
    "textures": ("far", "crops of scikit-image's brick, grass and gravel textures"),
    "photos": ("far", "crops of scikit-image's and scikit-learn's sample photographs"),
    "gaussian_noise": ("far", "Gaussian pixel noise with the dataset's mean and std"),
    "uniform_noise": ("far", "uniform pixel noise in [0, 1]"),
    "digits_8x8": ("covariate", "scikit-learn's 8x8 digits upsampled and framed like MNIST (labelled)"),
}
DOWNLOAD_SETS = ("fashion_mnist", "kmnist")
TEXTURES = ("brick", "grass", "gravel")
#: skimage.data images that ship with scikit-image (no download), plus scikit-learn's two sample images.
PHOTOS = ("camera", "coins", "moon", "astronaut", "coffee", "chelsea", "rocket", "clock", "hubble_deep_field",
          "immunohistochemistry", "china.jpg", "flower.jpg")
#: Version of the OOD recipes; part of the cache key.
VERSION = 1


@dataclass
class OODSet:
    """Standardized images ``x``, labels ``y`` (-1 = OOD, class labels for covariate shift) and per-image
    ``sources`` (which letter and font, which photo...)."""

    name: str
    kind: str
    x: torch.Tensor
    y: torch.Tensor
    sources: list[str] = field(repr=False)

    def __len__(self) -> int:
        return len(self.y)

    def loader(self, batch_size: int = 256) -> DataLoader:
        """The set in a loader of ``(x, y)`` batches, in order."""
        return DataLoader(TensorDataset(self.x, self.y), batch_size=batch_size, shuffle=False)


@cache
def _source_image(name: str) -> np.ndarray:
    """A bundled image as float32 (H, W, 3) in [0, 1]."""
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name)
    else:
        import skimage.data

        img = getattr(skimage.data, name)()
    img = np.asarray(img, dtype=np.float32) / (255 if img.dtype == np.uint8 else 1)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def _crops(names: tuple[str, ...], n: int, rng: np.random.Generator, side: int) -> tuple[torch.Tensor, list[str]]:
    """Random square crops (side ``side`` to ``4 * side``, so scales vary), resized to ``side``, RGB in [0, 1].

    A nearly flat crop (pixel std < 0.04: sky, background) is drawn again, up to 10 times.
    """
    picks = rng.integers(0, len(names), size=n)
    out, sources = [], []
    for i in picks:
        img = _source_image(names[i])
        h, w, _ = img.shape
        for _ in range(10):
            s = int(rng.integers(side, min(4 * side, h, w) + 1))
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            crop = img[top:top + s, left:left + s]
            if crop.std() >= 0.04:
                break
        crop_t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
        out.append(fit_to_shape(crop_t, (3, side, side)))
        sources.append(f"{names[i]} ({top}, {left}, {s}px)")
    return (torch.cat(out) if out else torch.zeros(0, 3, side, side)), sources


def _digits_8x8(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    if n > len(d.target):
        raise ValueError(f"n={n} is not valid for 'digits_8x8'; it has {len(d.target)} images")
    idx = np.sort(rng.choice(len(d.target), size=n, replace=False))
    x = torch.from_numpy(np.stack([mnist_frame(d.images[i] / 16.0) for i in idx])).unsqueeze(1)
    return x, torch.as_tensor(d.target[idx], dtype=torch.long), [f"digits[{i}]" for i in idx]


def _torchvision_set(name: str, n: int, rng: np.random.Generator, root: Path, download: bool
                     ) -> tuple[torch.Tensor, list[str]]:
    """``n`` random test images of Fashion-MNIST or KMNIST as (n, 1, 28, 28) in [0, 1]."""
    from torchvision import datasets

    cls = {"fashion_mnist": datasets.FashionMNIST, "kmnist": datasets.KMNIST}[name]
    try:
        ds = cls(root=str(root), train=False, download=download)
    except RuntimeError as e:
        raise RuntimeError(f"OOD set {name!r} not found under {root}; pass download=True to fetch it "
                           f"(needs network access) [{e}]") from e
    if n > len(ds):
        raise ValueError(f"n={n} is not valid for {name!r}; its test split has {len(ds)} images")
    idx = np.sort(rng.choice(len(ds), size=n, replace=False))
    x = ds.data[torch.from_numpy(idx)].float().div(255).unsqueeze(1)
    return x, [f"{name}[{i}] {ds.classes[int(ds.targets[i])]}" for i in idx]


def _build(name: str, shape: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...], n: int,
           seed: int, root: Path, download: bool) -> dict[str, object]:
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    c, h, w = shape
    y = torch.full((n,), -1, dtype=torch.long)
    if name == "letters":
        x, sources = render_letters(n, seed)
    elif name in DOWNLOAD_SETS:
        x, sources = _torchvision_set(name, n, rng, root, download)
    elif name in ("textures", "photos"):
        x, sources = _crops(TEXTURES if name == "textures" else PHOTOS, n, rng, max(h, w))
    elif name == "gaussian_noise":
        m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        x = (m + s * torch.from_numpy(rng.standard_normal((n, c, h, w))).float()).clamp(0, 1)
        sources = ["N(mean, std)"] * n
    elif name == "uniform_noise":
        x, sources = torch.from_numpy(rng.random((n, c, h, w))).float(), ["U(0, 1)"] * n
    else:  # digits_8x8
        x, y, sources = _digits_8x8(n, rng)
    return {"x": pack_pixels(fit_to_shape(x, shape)), "y": y, "sources": sources}


def ood_set(name: str, info: DatasetInfo, n: int = 1000, seed: int = 0, root: os.PathLike | str | None = None,
            download: bool = False, cache: bool = True) -> OODSet:
    """OOD set ``name`` (see ``OOD_SETS``) with ``n`` images shaped and standardized like ``info``'s data.

    Deterministic in ``seed``; cached in ``<checkpoints>/robustness/ood/`` unless ``cache=False``. The
    torchvision sets (``DOWNLOAD_SETS``) read ``root`` (default ``data/``) and download only if ``download``.
    """
    if name not in OOD_SETS:
        raise ValueError(f"name={name!r} is not a known OOD set; choose one of {list(OOD_SETS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not valid; it must be an integer >= 1")
    shape = tuple(int(s) for s in info.input_shape)
    root_path = Path(root) if root is not None else data_dir()
    key = {"set": name, "shape": "x".join(map(str, shape)), "n": n, "seed": seed, "version": VERSION}
    if name == "gaussian_noise":  # the only recipe that reads the dataset's statistics
        key["stats"] = "_".join(f"{v:.4f}" for v in (*info.mean, *info.std))
    payload = cached("ood", key, lambda: _build(name, shape, tuple(info.mean), tuple(info.std), n, seed,
                                                root_path, download), use_cache=cache)
    x = standardize(unpack_pixels(payload["x"]), info.mean, info.std)
    return OODSet(name, OOD_SETS[name][0], x, payload["y"], list(payload["sources"]))
