"""The MNIST-C style corruption suite: contract of every corruption, a few exact definitions, and bad inputs."""

import numpy as np
import pytest
import skimage.data
import torch

from course_utils.robustness import corruptions as C
from course_utils.robustness.corrupted_data import clean_test_set
from course_utils.robustness.images import fit_to_shape, standardize, unstandardize


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """10 real MNIST digits (mnist_5k) in [0, 1], shape (10, 1, 28, 28)."""
    x, _, info = clean_test_set("mnist_5k")
    return unstandardize(x[::97][:10], info.mean, info.std).clamp(0, 1)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """8 RGB 32x32 crops of a photograph, the CIFAR-10 case."""
    img = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    crops = [img[:, r:r + 96, c:c + 96] for r in (40, 300) for c in (40, 160, 280, 400)]
    return fit_to_shape(torch.stack(crops), (3, 32, 32))


@pytest.mark.parametrize("corruption", C.CORRUPTIONS)
def test_corruption_contract(digits, corruption):
    ladder = C.corruption_ladder(digits, corruption, seed=0)
    assert ladder.shape == (C.MAX_SEVERITY + 1, *digits.shape) and ladder.dtype == digits.dtype
    assert ladder.min() >= 0 and ladder.max() <= 1
    assert torch.equal(ladder[0], digits)
    # the same seed gives the same images; another seed other images (for the random corruptions only)
    assert torch.equal(C.corrupt(digits, corruption, 3, seed=0), ladder[3])
    other = C.corrupt(digits, corruption, 3, seed=1)
    assert torch.equal(other, ladder[3]) == (corruption not in C.RANDOM_CORRUPTIONS)
    # severity ladders are monotone: mean distance to the clean batch never decreases
    dist = (ladder - digits).flatten(2).norm(dim=2).mean(dim=1)
    assert torch.all(dist[1:] >= dist[:-1] - 1e-6), f"{corruption} distances {dist.tolist()}"
    assert dist[1] > 0


@pytest.mark.parametrize("corruption", C.CORRUPTIONS)
def test_corruption_on_rgb(photos, corruption):
    """The CIFAR-10 case: 3 channels, 32 px; severity 5 is farther from the clean image than severity 1."""
    low, high = C.corrupt(photos, corruption, 1, seed=0), C.corrupt(photos, corruption, 5, seed=0)
    assert high.shape == photos.shape and high.dtype == photos.dtype
    assert high.min() >= 0 and high.max() <= 1
    assert torch.equal(C.corrupt(photos, corruption, 5, seed=0), high)
    d_low, d_high = ((x - photos).flatten(1).norm(dim=1).mean() for x in (low, high))
    assert 0 < d_low <= d_high


def test_dtype_and_device_are_kept(digits):
    x = digits.double()
    y = C.corrupt(x, "rotate", 2)
    assert y.dtype == torch.float64 and y.device == x.device
    assert torch.allclose(y.float(), C.corrupt(digits, "rotate", 2), atol=1e-6)


def test_severity_zero_is_a_copy(digits):
    y = C.corrupt(digits, "fog", 0)
    assert torch.equal(y, digits) and y.data_ptr() != digits.data_ptr()


def test_definitions_follow_mnist_c(digits):
    assert C.corruption_params("rotate", 2) == 0.4 and C.corruption_params("shot_noise", 5) == 3
    shot = C.corrupt(digits, "shot_noise", 5)  # poisson(3 x) / 3: multiples of 1/3
    assert torch.allclose(shot * 3, (shot * 3).round(), atol=1e-5)
    impulse = C.corrupt(digits, "impulse_noise", 4)  # salt and pepper: a pixel is kept, 0 or 1
    changed = impulse != digits
    assert torch.all((impulse[changed] == 0) | (impulse[changed] == 1))
    assert 0.05 < changed.float().mean() < 0.2  # amount 0.17, half of it on already-black pixels
    stripe = C.corrupt(digits, "stripe", 5)  # MNIST-C inverts 7 of 28 columns on each side
    assert torch.allclose(stripe[..., :7], 1 - digits[..., :7])
    assert torch.allclose(stripe[..., 21:], 1 - digits[..., 21:])
    assert torch.equal(stripe[..., 7:21], digits[..., 7:21])
    edges = C.corrupt(digits, "canny_edges", 5)  # top severity: the binary edge map only
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    bright = C.corrupt(digits, "brightness", 2)  # on grey images, V + 0.2
    assert torch.allclose(bright, (digits + 0.2).clamp(0, 1), atol=1e-6)
    moved = C.corrupt(digits, "translate", 3)  # each image shifted by 3 px along both axes, directions at random
    for m, d in zip(moved[:, 0], digits[:, 0]):
        assert any(torch.allclose(m[3:25, 3:25], d[3 - dy:25 - dy, 3 - dx:25 - dx], atol=1e-5)
                   for dy in (-3, 3) for dx in (-3, 3))
    assert set(C.MNISTC_SEVERITY) <= set(C.CORRUPTIONS)


def test_ladders_share_random_draws(digits):
    """Common random numbers: severity 2 draws the line of severity 1 plus one more, in the same place."""
    one, two = C.corrupt(digits, "dotted_line", 1), C.corrupt(digits, "dotted_line", 2)
    assert torch.all(two >= one - 1e-6)
    signs = [torch.sign((C.corrupt(digits, "shear", s) - digits).sum()) for s in (1, 5)]
    assert signs[0] == signs[1]


def test_corrupt_standardized_round_trip(digits):
    mean, std = (0.13,), (0.31,)
    z = standardize(digits, mean, std)
    assert torch.allclose(C.corrupt_standardized(z, mean, std, "fog", 0), z, atol=1e-5)
    expected = standardize(C.corrupt(digits, "fog", 2, seed=4), mean, std)
    assert torch.allclose(C.corrupt_standardized(z, mean, std, "fog", 2, seed=4), expected, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(corruption="snow"), r"corruption='snow' is not valid; choose one of \['gaussian_noise'"),
    (dict(severity=6), "severity=6 is not valid; it must be an integer from 0 to 5"),
    (dict(severity=-1), "severity=-1"),
    (dict(severity=1.5), "severity=1.5"),
    (dict(severity=True), "severity=True"),
])
def test_bad_corruption_arguments(digits, kwargs, match):
    args = dict(corruption="fog", severity=1) | kwargs
    with pytest.raises(ValueError, match=match):
        C.corrupt(digits, **args)


@pytest.mark.parametrize("x, match", [
    (torch.rand(1, 28, 28), "rank 4.*got shape \\(1, 28, 28\\)"),
    (torch.rand(2, 2, 28, 28), "1 or 3 channels"),
    (torch.randint(0, 255, (2, 1, 28, 28)), "floating-point"),
    (torch.randn(2, 1, 28, 28) * 3, "pixels in \\[0, 1\\].*un-standardized"),
    (np.zeros((2, 1, 28, 28)), "torch.Tensor"),
])
def test_bad_images(x, match):
    with pytest.raises(ValueError, match=match):
        C.corrupt(x, "rotate", 1)


def test_corruption_params_needs_a_real_severity():
    with pytest.raises(ValueError, match="from 1 to 5"):
        C.corruption_params("rotate", 0)


def test_families_cover_every_corruption_once():
    listed = [c for group in C.FAMILIES.values() for c in group]
    assert sorted(listed) == sorted(C.CORRUPTIONS)
