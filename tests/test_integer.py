"""Tests of course_utils.quantization.integer (the references of notebook 03's exercises 4 and 5) and of DyT's bound
(exercise 6): the observer against torchao's MinMaxObserver and numpy/torch percentiles, the integer Linear against
PyTorch's oneDNN int8 kernel to the last integer, and the integer ViT built from them."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchao.quantization.pt2e import MinMaxObserver
from torchao.quantization.quant_primitives import quantize_affine

import course_utils.quantization as Q
from course_utils.metrics import output_cosine_similarity
from course_utils.models import DynamicTanh, build_model

DIGITS = (1, 8, 8)
#: Whether oneDNN sums 8-bit products in int32 throughout on this CPU (with VNNI instructions).
VNNI = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()


def tiny_vit(norm: str = "dyt") -> nn.Module:
    torch.manual_seed(0)
    return build_model("vit", norm, 10, DIGITS, size="nano").eval()


def batches(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(40, 8, generator=gen) * s + m for s, m in ((1.0, 0.0), (4.0, 1.0), (0.3, -3.0))]


# ------------------------------------------------------------------------------------------------- observer

def test_minmax_observer_matches_torchao():
    xs = batches()
    obs = MinMaxObserver()
    for x in xs:
        obs(x)
    assert Q.observe_range(xs) == (obs.min_val.item(), obs.max_val.item())
    assert Q.observe_range(iter(xs), "minmax") == Q.observe_range(xs)  # seen once: an iterator is enough
    lo, hi = Q.observe_range([torch.rand(5) + 1.0])
    assert lo >= 1.0  # the observer records what it saw; widening to contain 0 is the scale's job


@pytest.mark.parametrize("q", [99.9, 99.0, 75.0, 100.0])
def test_percentile_observer_matches_numpy_and_torch(q):
    xs = batches(1)
    values = torch.cat([x.flatten() for x in xs]).double()
    lo, hi = Q.observe_range(xs, "percentile", q)
    np.testing.assert_allclose((lo, hi), np.percentile(values.numpy(), [100 - q, q]), rtol=1e-12)
    ref = torch.quantile(values, torch.tensor([1 - q / 100, q / 100], dtype=torch.float64))
    np.testing.assert_allclose((lo, hi), ref.numpy(), rtol=1e-9)
    if q == 100.0:
        assert (lo, hi) == pytest.approx(Q.observe_range(xs))


def test_observer_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        Q.observe_range(batches(), "histogram")
    with pytest.raises(ValueError, match="q="):
        Q.observe_range(batches(), "percentile", 0.999)
    with pytest.raises(ValueError, match="no values"):
        Q.observe_range([torch.empty(0)])


# ------------------------------------------------------------------------------------------------- integer Linear

def ints(gen: torch.Generator, lo: int, hi: int, *shape: int, dtype: torch.dtype = torch.int8) -> torch.Tensor:
    return torch.randint(lo, hi + 1, shape, generator=gen).to(dtype)


def dyadic_case(dtype: torch.dtype, spread: int, w_max: int, out_scale: float, seed: int, odd_zp: bool = False):
    """Arguments with power-of-two scales and a bias on the int32 grid: every float step is exact."""
    gen = torch.Generator().manual_seed(seed)
    dmin, dmax = torch.iinfo(dtype).min, torch.iinfo(dtype).max
    x_zp = int(ints(gen, dmin + 8, dmax - 8, 1, dtype=torch.int32))
    out_zp = 2 * int(ints(gen, -40, 40, 1, dtype=torch.int32)) + (128 if dtype == torch.uint8 else 0) + int(odd_zp)
    w_scale = 2.0 ** -ints(gen, 6, 9, 24, dtype=torch.float32)
    q_x = (x_zp + ints(gen, -spread, spread, 3, 40, 96, dtype=torch.int32)).clamp(dmin, dmax).to(dtype)
    b = ints(gen, -90, 90, 24).float() * 2 ** -5 * w_scale
    return q_x, 2 ** -5, x_zp, ints(gen, -w_max, w_max, 24, 96), w_scale, b, out_scale, out_zp


#: Full-range weights only where oneDNN sums in int32 throughout: without VNNI it adds pairs of products in int16,
#: which +/-63 (7-bit) weights cannot saturate.
WIDE = pytest.param(255, 127, 2 ** -2, marks=pytest.mark.skipif(not VNNI, reason="needs a CPU with VNNI"))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8])
@pytest.mark.parametrize("spread, w_max, out_scale", [(8, 4, 2 ** -9), (255, 63, 2 ** -3), WIDE])
def test_int_linear_matches_onednn_to_the_last_integer(dtype, spread, w_max, out_scale):
    args = dyadic_case(dtype, spread, w_max, out_scale, seed=spread + w_max)
    got, lib = Q.int_linear(*args), Q.onednn_int_linear(*args)
    assert got.dtype == lib.dtype == dtype and got.shape == (3, 40, 24)
    torch.testing.assert_close(got, lib, rtol=0, atol=0)
    q_x, x_scale, x_zp, q_w, w_scale, b, s_out, _ = args
    acc = (q_x.double() - x_zp) @ q_w.double().T
    exact = (acc + (b / (x_scale * w_scale)).double()) * (x_scale * w_scale / s_out)
    if spread == 8:  # the small case is full of exact ties, which both round to even
        assert ((exact - exact.floor()) == 0.5).sum() > 100
    else:  # the large one needs int32: its sums leave the int16 range
        assert acc.abs().max() > 2 ** 15


def test_odd_output_zero_point_is_the_one_convention_that_differs():
    """oneDNN rounds v + out_zp, PyTorch's quantize rounds v and then adds out_zp: at an exact tie with an odd
    out_zp the two land one integer apart, and nowhere else."""
    args = dyadic_case(torch.uint8, 8, 4, 2 ** -9, seed=3, odd_zp=True)
    got, lib = Q.int_linear(*args), Q.onednn_int_linear(*args)
    q_x, x_scale, x_zp, q_w, w_scale, b, s_out, _ = args
    exact = ((q_x.double() - x_zp) @ q_w.double().T + (b / (x_scale * w_scale)).double()) * (x_scale * w_scale / s_out)
    tie = (exact - exact.floor()) == 0.5
    differ = got != lib
    assert differ.any() and not (differ & ~tie).any()
    assert ((got.int() - lib.int()).abs() <= 1).all()


def test_int_linear_with_float_scales_matches_onednn_and_the_float_path():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(128, 64, generator=gen) * 2 + 0.5
    w = torch.randn(32, 64, generator=gen) * 0.1
    bias = torch.randn(32, generator=gen) * 0.3
    x_scale, x_zp = Q.scale_zero_point(x, 8)
    w_scale, w_zp = Q.scale_zero_point(w, 7, symmetric=True, per_channel=True)  # 7 bits: no int16 saturation
    q_x, q_w = Q.quantize(x, x_scale, x_zp, 8).to(torch.uint8), Q.quantize(w, w_scale, w_zp, 7, True).to(torch.int8)
    bias_scale = x_scale * w_scale
    bias = torch.round(bias / bias_scale) * bias_scale  # on the int32 grid: oneDNN adds it in fp32
    y = F.linear(Q.dequantize(q_x, x_scale, x_zp), Q.dequantize(q_w, w_scale, w_zp), bias)
    out_scale, out_zp = Q.scale_zero_point(y, 8)
    args = (q_x, x_scale.item(), int(x_zp), q_w, w_scale, bias, out_scale.item(), int(out_zp))
    got, lib = Q.int_linear(*args), Q.onednn_int_linear(*args)
    fake = quantize_affine(y, y.shape, out_scale.reshape(1), out_zp.reshape(1), torch.uint8, 0, 255)  # the fp32 path
    exact = ((q_x.double() - int(x_zp)) @ q_w.double().T + torch.round(bias / bias_scale).double()) * (
        bias_scale.double() / out_scale.double())
    near_tie = (exact - exact.floor() - 0.5).abs() < 1e-4
    for other in (lib, fake):
        assert torch.equal(got[~near_tie], other[~near_tie])
        assert ((got.int() - other.int()).abs() <= 1).all()
        assert (got != other).float().mean() < 1e-3


def test_int_linear_bias_is_quantized_to_int32():
    gen = torch.Generator().manual_seed(8)
    q_x, q_w = ints(gen, 97, 105, 8, 4, dtype=torch.uint8), ints(gen, -5, 5, 3, 4)
    half = (ints(gen, -40, 40, 3, dtype=torch.float32) + 0.5) * 2 ** -7  # b / (x_scale * w_scale) ends in .5
    w_scale = torch.full((3,), 2.0 ** -4)
    got = Q.int_linear(q_x, 2 ** -3, 101, q_w, w_scale, half, 2 ** -7, 128)
    acc = (q_x.int() - 101) @ q_w.int().T
    assert torch.equal(got.int(), acc + torch.round(half / 2 ** -7).int() + 128)  # multiplier 1: the sum itself
    without = Q.int_linear(q_x, 2 ** -3, 101, q_w, w_scale, None, 2 ** -7, 128)
    assert torch.equal(without.int(), acc + 128)


def test_int_linear_bad_arguments():
    q_x, q_w, s = torch.zeros(2, 4, dtype=torch.uint8), torch.zeros(3, 4, dtype=torch.int8), torch.ones(3)
    with pytest.raises(ValueError, match="uint8 or int8"):
        Q.int_linear(q_x.int(), 1.0, 0, q_w, s, None, 1.0, 0)
    with pytest.raises(ValueError, match="int8 tensor"):
        Q.int_linear(q_x, 1.0, 0, q_w.int(), s, None, 1.0, 0)
    with pytest.raises(ValueError, match="features"):
        Q.int_linear(q_x, 1.0, 0, q_w[:, :3], s, None, 1.0, 0)
    with pytest.raises(ValueError, match="w_scale"):
        Q.int_linear(q_x, 1.0, 0, q_w, torch.ones(2), None, 1.0, 0)
    with pytest.raises(ValueError, match="b has"):
        Q.int_linear(q_x, 1.0, 0, q_w, s, torch.ones(2), 1.0, 0)


# ------------------------------------------------------------------------------------------------- integer ViT

def test_integer_linear_model_runs_every_linear_in_integers():
    model = tiny_vit()
    x = torch.randn(64, *DIGITS, generator=torch.Generator().manual_seed(2))
    calls: list[str] = []

    def spy(*args):
        calls.append(args[0].dtype)
        return Q.int_linear(*args)

    ranged: list[int] = []

    def observer(xs):
        ranged.append(len(xs))
        return Q.observe_range(xs)

    im = Q.integer_linear_model(model, x, int_linear=spy, observer=observer, batch_size=16)
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(isinstance(m, Q.IntegerLinear) for m in im.modules()) == n_linear
    assert not any(isinstance(m, nn.Linear) for m in im.modules())
    assert ranged == [4] * (2 * n_linear)  # inputs and outputs of every Linear, 64 images in batches of 16
    with torch.no_grad():
        out, ref = im(x), model(x)
    assert calls and set(calls) == {torch.uint8} and len(calls) == n_linear
    assert output_cosine_similarity(out, ref) > 0.99
    assert any(isinstance(m, nn.Linear) for m in model.modules())  # the original model is untouched
    if VNNI:  # oneDNN's kernel in the same model (full-range weights): the same integers but at ties
        with torch.no_grad():
            lib = Q.integer_linear_model(model, x, int_linear=Q.onednn_int_linear, batch_size=16)(x)
        assert output_cosine_similarity(out, lib) > 0.999
    pct = Q.integer_linear_model(model, x, observer=functools.partial(Q.observe_range, method="percentile", q=99.0))
    layer = pct.blocks[0].mlp.fc1
    assert isinstance(layer, Q.IntegerLinear) and layer.x_scale < im.blocks[0].mlp.fc1.x_scale
    assert "x_zp=" in repr(layer)


def test_integer_linear_model_needs_linear_layers():
    with pytest.raises(ValueError, match="no nn.Linear"):
        Q.integer_linear_model(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.randn(4, 1, 8, 8))
    with pytest.raises(ValueError, match="nn.Linear"):
        Q.IntegerLinear(nn.Conv2d(1, 2, 3), (0.0, 1.0), (0.0, 1.0))


# ------------------------------------------------------------------------------------------------- DyT's bound

def test_dyt_bound_is_reached_at_huge_inputs_and_holds_elsewhere():
    gen = torch.Generator().manual_seed(6)
    for channels_last in (True, False):
        dyt = DynamicTanh(12, channels_last=channels_last, alpha_init_value=0.4)
        with torch.no_grad():
            dyt.weight.copy_(torch.randn(12, generator=gen))
            dyt.bias.copy_(torch.randn(12, generator=gen) * 0.5)
        lo, hi = Q.dyt_bound(dyt)
        huge = torch.full((2, 12), 1e4)
        huge[1] *= -1
        x = torch.randn(100, 12, generator=gen) * 10
        if not channels_last:
            huge, x = huge[:, :, None, None], x[:, :, None, None]
        with torch.no_grad():
            edge, inside = dyt(huge), dyt(x)
        assert (edge.min().item(), edge.max().item()) == pytest.approx((lo, hi), abs=1e-6)
        assert lo <= inside.min().item() and inside.max().item() <= hi


def test_layer_ranges_of_dyt_outputs_lie_inside_the_bound():
    model = tiny_vit()
    x = torch.randn(32, *DIGITS, generator=torch.Generator().manual_seed(3))
    layers = {n: m for n, m in model.named_modules() if isinstance(m, DynamicTanh)}
    ranges = Q.layer_ranges(model, x, list(layers), "output")
    assert set(ranges) == set(layers)
    for name, (lo, hi) in ranges.items():
        b_lo, b_hi = Q.dyt_bound(layers[name])
        assert b_lo <= lo <= hi <= b_hi


def test_set_bound_qparams_takes_the_bound_function():
    model = tiny_vit()
    x = torch.randn(64, *DIGITS, generator=torch.Generator().manual_seed(4))
    default = Q.set_bound_qparams(Q.static_int8(model, x, observer="minmax"), model)
    seen: list[str] = []

    def wide(module: nn.Module) -> tuple[float, float]:
        seen.append(type(module).__name__)
        return -8.0, 8.0

    custom = Q.set_bound_qparams(Q.static_int8(model, x, observer="minmax"), model, bound=wide)
    assert seen and set(seen) == {"DynamicTanh"} and len(seen) == len(custom)
    np.testing.assert_allclose(custom.bound_lo, -8.0, rtol=1e-2)
    assert (custom.bound_hi > default.bound_hi).all()
    same = Q.set_bound_qparams(Q.static_int8(model, x, observer="minmax"), model, bound=Q.dyt_bound)
    np.testing.assert_allclose(same.bound_lo, default.bound_lo)
