"""Corrupted test sets (standardization, cache keys, round trip) and the OOD sets (offline, shapes, letters)."""

import struct

import numpy as np
import pytest
import torch

from course_utils import data as D
from course_utils.data import DatasetInfo
from course_utils.robustness import cache as K
from course_utils.robustness import corrupted_data as CD
from course_utils.robustness import corruptions as C
from course_utils.robustness import letters as L
from course_utils.robustness import ood_data as O
from course_utils.robustness.images import fit_to_shape, unstandardize


def write_idx(path, array: np.ndarray) -> None:
    """``array`` as uint8 in the IDX format of MNIST's files: a big-endian header, then the raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())

MNIST_INFO = DatasetInfo("mnist_5k", 10, (1, 28, 28), [str(i) for i in range(10)], (0.13,), (0.31,))
CIFAR_INFO = DatasetInfo("cifar10", 10, (3, 32, 32), [str(i) for i in range(10)], (0.4914, 0.4822, 0.4465),
                         (0.2470, 0.2435, 0.2616))


def _files():
    return sorted(p.name for p in (K.cache_dir() / "corrupted").glob("*.pt"))


def test_corrupted_set_is_standardized_like_the_clean_one():
    ds = CD.corrupted_test_set("digits", "rotate", 2, seed=0, size=40)
    x, y = ds.tensors
    clean_x, clean_y, info = CD.clean_test_set("digits", size=40, seed=0)
    ref, ref_y = D.stack_loader(D.get_data("digits", test_subset=40, seed=0).test_loader)
    assert torch.equal(clean_x, ref) and torch.equal(y, ref_y) and torch.equal(clean_y, ref_y)
    expected = C.corrupt_standardized(clean_x, info.mean, info.std, "rotate", 2, seed=0)
    # stored as uint8 pixels: equal up to half a grey level, in standardized units
    assert torch.allclose(x, expected, atol=0.5 / 255 / info.std[0] + 1e-5)
    assert x.dtype == torch.float32 and not torch.allclose(x, clean_x)
    pixels = unstandardize(x, info.mean, info.std)
    assert pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5


def test_cache_round_trip_and_keys(monkeypatch, tmp_path):
    assert K.cache_dir().is_relative_to(tmp_path)  # conftest keeps every test's files apart
    first = CD.corrupted_test_set("digits", "shot_noise", 1, seed=0, size=30)
    assert len(_files()) == 1 and "corruption=shot_noise,severity=1,seed=0,size=30" in _files()[0]

    def boom(*args, **kwargs):
        raise AssertionError("a cached set must not be recomputed")

    with monkeypatch.context() as m:  # (not monkeypatch.undo(): it would also undo conftest's output folders)
        m.setattr(CD, "corrupt", boom)
        again = CD.corrupted_test_set("digits", "shot_noise", 1, seed=0, size=30)
    assert torch.equal(first.tensors[0], again.tensors[0]) and torch.equal(first.tensors[1], again.tensors[1])
    for kwargs in (dict(severity=2), dict(seed=1), dict(size=31), dict(corruption="rotate")):
        args = dict(dataset="digits", corruption="shot_noise", severity=1, seed=0, size=30) | kwargs
        CD.corrupted_test_set(**args)
    assert len(_files()) == 5  # one file per key
    assert not torch.equal(CD.corrupted_test_set("digits", "shot_noise", 1, seed=1, size=30).tensors[0],
                           first.tensors[0])


def test_cache_rebuilds_on_a_new_version_and_can_be_skipped(monkeypatch):
    CD.corrupted_test_set("digits", "fog", 1, size=20)
    monkeypatch.setattr(CD, "VERSION", C.VERSION + 1)
    CD.corrupted_test_set("digits", "fog", 1, size=20)
    assert len(_files()) == 2
    CD.corrupted_test_set("digits", "fog", 2, size=20, cache=False)
    assert len(_files()) == 2
    clean = CD.corrupted_test_set("digits", "fog", 0, size=20)  # severity 0: the clean set, nothing cached
    assert torch.equal(clean.tensors[0], CD.clean_test_set("digits", 20)[0]) and len(_files()) == 2


def test_a_corrupted_file_is_replaced():
    CD.corrupted_test_set("digits", "contrast", 1, size=10)
    path = K.cache_dir() / "corrupted" / _files()[0]
    path.write_bytes(b"not a torch file")
    ds = CD.corrupted_test_set("digits", "contrast", 1, size=10)
    assert len(ds) == 10 and path.stat().st_size > 100


def test_build_and_loader():
    timings = CD.build_corrupted_sets("digits", ["stripe", "scale"], [1, 2], size=16)
    assert set(timings) == {"stripe", "scale"} and len(_files()) == 4
    x, y = next(iter(CD.corrupted_loader("digits", "stripe", 1, size=16, batch_size=8)))
    assert x.shape == (8, 1, 8, 8)


def test_corrupted_set_bad_arguments():
    with pytest.raises(ValueError, match="corruption='frost'"):
        CD.corrupted_test_set("digits", "frost", 1)
    with pytest.raises(ValueError, match="severity=9"):
        CD.corrupted_test_set("digits", "fog", 9)


OFFLINE = [n for n in O.OOD_SETS if n not in O.DOWNLOAD_SETS]


@pytest.mark.parametrize("info", [MNIST_INFO, CIFAR_INFO], ids=["mnist", "cifar"])
@pytest.mark.parametrize("name", OFFLINE)
def test_offline_ood_sets(name, info):
    s = O.ood_set(name, info, n=24, seed=0)
    assert s.x.shape == (24, *info.input_shape) and s.x.dtype == torch.float32
    assert len(s) == 24 and len(s.sources) == 24 and s.kind == O.OOD_SETS[name][0]
    pixels = unstandardize(s.x, info.mean, info.std)  # standardized with the dataset's statistics
    assert pixels.min() > -1e-4 and pixels.max() < 1 + 1e-4 and pixels.std() > 0.05
    if name == "digits_8x8":
        assert s.kind == "covariate" and s.y.min() >= 0 and s.y.max() <= 9
    else:
        assert torch.all(s.y == -1)
    again = O.ood_set(name, info, n=24, seed=0, cache=False)
    assert torch.equal(again.x, s.x) and again.sources == s.sources
    assert not torch.equal(O.ood_set(name, info, n=24, seed=1).x, s.x)
    x, y = next(iter(s.loader(batch_size=8)))
    assert x.shape == (8, *info.input_shape)


def test_offline_sets_never_touch_the_network(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("an offline OOD set tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for name in OFFLINE:
        assert len(O.ood_set(name, CIFAR_INFO, n=4, seed=5, cache=False)) == 4


def test_corrupted_cifar10_on_files_in_the_real_format(tmp_path, monkeypatch):
    import pickle

    import torchvision.datasets.cifar as cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    # tiny files cannot match the real archive's MD5 sums; only the checksum is bypassed
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: __import__("os").path.isfile(path))
    ds = CD.corrupted_test_set("cifar10", "fog", 2, size=4, root=tmp_path)
    x, _, info = CD.clean_test_set("cifar10", size=4, root=tmp_path)
    assert ds.tensors[0].shape == (4, 3, 32, 32) and len(info.mean) == 3
    expected = C.corrupt_standardized(x, info.mean, info.std, "fog", 2)
    assert torch.allclose(ds.tensors[0], expected, atol=0.5 / 255 / min(info.std) + 1e-5)


def test_gaussian_noise_matches_the_dataset_statistics():
    s = O.ood_set("gaussian_noise", MNIST_INFO, n=200)
    # N(mean, std) in pixels, clipped to [0, 1] (MNIST's mean is near 0, so about half the pixels are clipped)
    assert abs(unstandardize(s.x, MNIST_INFO.mean, MNIST_INFO.std).mean() - 0.17) < 0.03
    other = DatasetInfo("x", 10, (1, 28, 28), [], (0.5,), (0.2,))
    assert abs(O.ood_set("gaussian_noise", other, n=200).x.mean()) < 0.05


def test_letters_leave_out_digit_lookalikes():
    assert not set(L.LETTERS) & set(L.EXCLUDED)
    assert {"O", "o", "I", "l", "S", "Z", "B", "G", "D"} <= set(L.EXCLUDED)
    x, sources = L.render_letters(64, seed=3)
    assert {s.split()[0] for s in sources} <= set(L.LETTERS)
    assert len({s.split()[1] for s in sources}) > 5  # many fonts
    with pytest.raises(ValueError, match=r"\['O'\], which pass for digits"):
        L.render_letters(4, letters="AO")


def test_letters_are_framed_like_mnist():
    x, _ = L.render_letters(32, seed=0)
    ink = x[:, 0]
    rows = torch.arange(28, dtype=torch.float32)
    com_r = (ink.sum(2) * rows).sum(1) / ink.sum((1, 2))
    com_c = (ink.sum(1) * rows).sum(1) / ink.sum((1, 2))
    assert torch.all((com_r - 13.5).abs() <= 1) and torch.all((com_c - 13.5).abs() <= 1)
    for img in ink:  # the glyph fits a 20 x 20 box (one more pixel for anti-aliasing), its longer side fills it
        rows, cols = torch.nonzero(img.amax(1) > 0.05), torch.nonzero(img.amax(0) > 0.05)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert max(height, width) in (19, 20, 21) and min(height, width) <= 21


def _nn_distance(queries: torch.Tensor, reference: torch.Tensor) -> float:
    return torch.cdist(queries.flatten(1), reference.flatten(1)).min(dim=1).values.mean().item()


def test_letters_are_farther_from_digits_than_digits_and_lookalikes():
    x, _, info = CD.clean_test_set("mnist_5k")
    digits = unstandardize(x, info.mean, info.std).clamp(0, 1)
    reference, held_out = digits[:600], digits[600:800]
    letters = L.render_letters(200, seed=0)[0]

    def frame_all(chars):
        return torch.stack([torch.from_numpy(L.mnist_frame(g)) for f in L.FONTS for c in chars
                            if (g := L.glyph(f, c)) is not None])

    d_digits, d_letters = _nn_distance(held_out, reference), _nn_distance(letters, reference)
    assert d_letters > 1.05 * d_digits
    # the letters left out really are closer to digits than the ones kept
    assert _nn_distance(frame_all("".join(L.EXCLUDED)), reference) < _nn_distance(frame_all(L.LETTERS), reference)


def test_ood_cache_is_read(monkeypatch):
    first = O.ood_set("letters", MNIST_INFO, n=8)
    monkeypatch.setattr(O, "_build", lambda *a, **k: pytest.fail("a cached OOD set must not be rebuilt"))
    assert torch.equal(O.ood_set("letters", MNIST_INFO, n=8).x, first.x)
    # the pixels are cached, the standardization is the caller's
    other = DatasetInfo("other", 10, (1, 28, 28), [], (0.5,), (0.5,))
    assert torch.allclose(unstandardize(O.ood_set("letters", other, n=8).x, (0.5,), (0.5,)),
                          unstandardize(first.x, MNIST_INFO.mean, MNIST_INFO.std), atol=1e-5)


@pytest.mark.parametrize("name, folder", [("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
@pytest.mark.parametrize("info", [MNIST_INFO, CIFAR_INFO], ids=["mnist", "cifar"])
def test_torchvision_ood_sets_on_files_in_the_real_format(tmp_path, name, folder, info):
    test_images = np.random.default_rng(0).integers(0, 256, (12, 28, 28))
    raw = tmp_path / folder / "raw"
    for prefix, images in (("train", test_images[:4]), ("t10k", test_images)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(len(images)) % 10)
    s = O.ood_set(name, info, n=5, seed=0, root=tmp_path)
    assert s.x.shape == (5, *info.input_shape) and s.kind == "near" and torch.all(s.y == -1)
    images = torch.from_numpy(test_images).float().div(255)
    index = int(s.sources[0].split("[")[1].split("]")[0])
    expected = fit_to_shape(images[index][None, None], info.input_shape)
    pixels = unstandardize(s.x[:1], info.mean, info.std)
    assert torch.allclose(pixels, expected, atol=0.5 / 255 + 1e-5)
    with pytest.raises(ValueError, match="n=50 is not valid.*12 images"):
        O.ood_set(name, info, n=50, root=tmp_path)


def test_missing_torchvision_ood_set_explains_download(tmp_path):
    with pytest.raises(RuntimeError, match="download=True"):
        O.ood_set("kmnist", MNIST_INFO, n=4, root=tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="svhn"), r"name='svhn' is not a known OOD set; choose one of \['letters'"),
    (dict(n=0), "n=0 is not valid"),
    (dict(n=2.5), "n=2.5"),
])
def test_bad_ood_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        O.ood_set(**(dict(name="letters", info=MNIST_INFO, n=4) | kwargs))


def test_digits_8x8_has_at_most_its_images():
    with pytest.raises(ValueError, match="n=5000 is not valid for 'digits_8x8'"):
        O.ood_set("digits_8x8", MNIST_INFO, n=5000)


def test_fit_to_shape_converts_channels_and_size():
    grey = torch.rand(2, 1, 28, 28)
    rgb = fit_to_shape(grey, (3, 32, 32))
    assert rgb.shape == (2, 3, 32, 32) and torch.equal(rgb[:, 0], rgb[:, 1])
    assert fit_to_shape(rgb, (1, 28, 28)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="channel count must be 1 or 3"):
        fit_to_shape(grey, (2, 28, 28))
