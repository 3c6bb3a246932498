"""Tests of course_utils.quantization: from-scratch quantization against PyTorch's own, whole-model fake
quantization, real int8 models, half precision, activation statistics and mixed precision."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
from torchao.quantization.quant_primitives import dequantize_affine, quantize_affine

import course_utils.quantization as Q
from course_utils.metrics import output_cosine_similarity, size_on_disk
from course_utils.models import DynamicTanh, build_model
from course_utils.train import fit

DIGITS = (1, 8, 8)
#: ConvNet inputs: 16x16 keeps a 2x2 map after three poolings (torch's quantized mean fails on 1x1 channels-last maps).
SMALL = (1, 16, 16)


def tiny_vit(norm: str = "dyt") -> nn.Module:
    torch.manual_seed(0)
    return build_model("vit", norm, 10, DIGITS, size="nano").eval()


def tiny_cnn(norm: str = "batchnorm") -> nn.Module:
    torch.manual_seed(0)
    m = build_model("cnn", norm, 10, SMALL, size="tiny")
    m.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            m(torch.randn(32, *SMALL))
    return m.eval()


def images(n: int = 64, seed: int = 1, shape: tuple[int, ...] = DIGITS) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- from scratch

@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_scale_zero_point_matches_torch_observers(bits, symmetric):
    torch.manual_seed(bits)
    x = torch.randn(12, 20) * 3 + 0.5
    qmin, qmax = Q.qrange(bits, symmetric)
    dtype = torch.int8 if symmetric else torch.uint8
    obs = MinMaxObserver(dtype=dtype, quant_min=qmin, quant_max=qmax,
                         qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
    obs(x)
    s_ref, z_ref = obs.calculate_qparams()
    s, z = Q.scale_zero_point(x, bits, symmetric)
    torch.testing.assert_close(s, s_ref.reshape(()))
    assert int(z) == int(z_ref)
    pc = PerChannelMinMaxObserver(ch_axis=1, dtype=dtype, quant_min=qmin, quant_max=qmax,
                                  qscheme=torch.per_channel_symmetric if symmetric else torch.per_channel_affine)
    pc(x)
    s_ref, z_ref = pc.calculate_qparams()
    s, z = Q.scale_zero_point(x, bits, symmetric, per_channel=True, axis=1)
    torch.testing.assert_close(s, s_ref)
    assert torch.equal(z, z_ref.to(torch.int32))


def test_qrange_values():
    assert Q.qrange(8) == (0, 255)
    assert Q.qrange(8, symmetric=True) == (-127, 127)
    assert Q.qrange(4, symmetric=True) == (-7, 7)
    assert Q.qrange(2) == (0, 3)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("symmetric", [False, True])
def test_fake_quantize_matches_torch(bits, symmetric):
    torch.manual_seed(100 + bits)
    x = torch.randn(8, 3, 5, 5) * 2 - 0.3
    qmin, qmax = Q.qrange(bits, symmetric)
    s, z = Q.scale_zero_point(x, bits, symmetric)
    ref = torch.fake_quantize_per_tensor_affine(x, float(s), int(z), qmin, qmax)
    assert torch.equal(Q.fake_quantize(x, bits, symmetric), ref)
    s, z = Q.scale_zero_point(x, bits, symmetric, per_channel=True, axis=0)
    ref = torch.fake_quantize_per_channel_affine(x, s, z, 0, qmin, qmax)
    assert torch.equal(Q.fake_quantize(x, bits, symmetric, per_channel=True, axis=0), ref)


def test_quantize_dequantize_roundtrip_match_torchao_primitives():
    torch.manual_seed(3)
    x = torch.randn(50, 7)
    s, z = Q.scale_zero_point(x, 8)
    q = Q.quantize(x, s, z, 8)
    assert q.dtype == torch.int32 and q.min() >= 0 and q.max() <= 255
    block = tuple(x.shape)  # one block: per-tensor parameters
    ref = quantize_affine(x, block, s.reshape(1, 1), torch.tensor(int(z)).reshape(1, 1), torch.uint8, 0, 255)
    assert torch.equal(q, ref.to(torch.int32))
    torch.testing.assert_close(Q.dequantize(q, s, z), dequantize_affine(ref, block, s.reshape(1, 1),
                                                                        torch.tensor(int(z)).reshape(1, 1), torch.uint8,
                                                                        0, 255))
    # the rounding error is at most half a step inside the range
    assert (Q.dequantize(q, s, z) - x).abs().max() <= s / 2 + 1e-6
    # per-channel round trip equals fake quantization
    s, z = Q.scale_zero_point(x, 4, symmetric=True, per_channel=True, axis=1)
    q = Q.quantize(x, s, z, 4, symmetric=True, axis=1)
    assert q.abs().max() <= 7
    torch.testing.assert_close(Q.dequantize(q, s, z, axis=1), Q.fake_quantize(x, 4, True, True, axis=1))


def test_ste_gradient_matches_torch_and_clips():
    torch.manual_seed(4)
    x = (torch.randn(2000) * 2).requires_grad_()
    scale, zp = torch.tensor(0.01), torch.tensor(100)
    ref = torch.fake_quantize_per_tensor_affine(x, 0.01, 100, 0, 255)
    (ref * torch.arange(2000.0)).sum().backward()
    g_ref = x.grad.clone()
    x.grad = None
    mine = Q.fake_quantize(x, 8, scale=scale, zero_point=zp)
    (mine * torch.arange(2000.0)).sum().backward()
    assert torch.equal(mine, ref)
    assert torch.equal(x.grad, g_ref)
    xd, upstream = x.detach(), torch.arange(2000.0)
    outside = (xd < -1.01) | (xd > 1.56)  # the range of scale 0.01, zero point 100 is about [-1.005, 1.555]
    inside = (xd > -0.99) & (xd < 1.54)
    assert outside.any() and inside.any()
    assert torch.all(x.grad[outside] == 0)  # clipped values get no gradient
    assert torch.equal(x.grad[inside], upstream[inside])  # the rest passes straight through


def test_ste_per_channel_gradient_matches_torch():
    torch.manual_seed(5)
    w = torch.randn(6, 10, requires_grad=True)
    s, z = Q.scale_zero_point(w, 3, symmetric=True, per_channel=True)
    s = s * 0.7  # a narrower range so some weights are clipped
    ref = torch.fake_quantize_per_channel_affine(w, s, z, 0, -3, 3)
    ref.pow(2).sum().backward()
    g_ref = w.grad.clone()
    w.grad = None
    Q.fake_quantize(w, 3, True, True, 0, scale=s, zero_point=z).pow(2).sum().backward()
    torch.testing.assert_close(w.grad, g_ref)


def test_error_shrinks_with_bits_and_per_channel_helps():
    torch.manual_seed(6)
    w = torch.randn(32, 64) * torch.logspace(-2, 0, 32)[:, None]  # rows with very different ranges
    errs = [Q.quantization_error(w, b, symmetric=True)["mse"] for b in range(2, 9)]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    per_tensor = Q.quantization_error(w, 4, symmetric=True)["sqnr_db"]
    per_channel = Q.quantization_error(w, 4, symmetric=True, per_channel=True)["sqnr_db"]
    assert per_channel > per_tensor + 3


# ----------------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("bits", [1, 9, 0, 16, 2.5, "8", True, None])
def test_bits_outside_range_raise(bits):
    with pytest.raises(ValueError, match="bits"):
        Q.check_bits(bits)
    with pytest.raises(ValueError, match="bits"):
        Q.fake_quantize(torch.randn(4), bits)
    if bits is not None:
        with pytest.raises(ValueError, match="weight_bits"):
            Q.fake_quantize_model(tiny_vit(), weight_bits=bits)


def test_empty_calibration_raises():
    qm = Q.fake_quantize_model(tiny_vit(), 8, 8)
    empty_loader = DataLoader(TensorDataset(torch.empty(0, *DIGITS), torch.empty(0)), batch_size=4)
    for data in ([], empty_loader, torch.empty(0, *DIGITS)):
        with pytest.raises(ValueError, match="calibration data is empty"):
            Q.calibrate(qm, data)
        with pytest.raises(ValueError, match="calibration data is empty"):
            Q.static_int8(tiny_vit(), data)


def test_nothing_to_quantize_raises():
    model = nn.Sequential(nn.ReLU(), nn.Tanh())
    with pytest.raises(ValueError, match="nothing to quantize"):
        Q.fake_quantize_model(model)
    with pytest.raises(ValueError, match="nothing to quantize"):
        Q.dynamic_int8(model)
    with pytest.raises(ValueError, match="nothing to quantize"):
        Q.static_int8(model, torch.randn(4, 3))
    with pytest.raises(ValueError, match="nothing to quantize"):
        Q.layer_inputs(model, torch.randn(4, 3))
    with pytest.raises(ValueError, match="FakeQuantLayer"):
        Q.calibrate(model, torch.randn(4, 3))


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="observer"):
        Q.pt2e_quantizer("mean")
    with pytest.raises(ValueError, match="per_channel"):
        Q.static_int8(tiny_vit(), images(8), per_channel="yes")
    with pytest.raises(ValueError, match="weight_bits must be 4 or 8"):
        Q.qat_int8_prepare(tiny_vit(), weight_bits=6)
    with pytest.raises(ValueError, match="qat_int8_prepare"):
        Q.qat_int8_convert(tiny_vit())
    with pytest.raises(ValueError, match="dtype"):
        Q.HalfPrecision(tiny_vit(), "float8")
    with pytest.raises(ValueError, match="skip"):
        Q.fake_quantize_model(tiny_vit(), skip=["nope"])
    with pytest.raises(ValueError, match="budget"):
        Q.greedy_bit_allocation({"a": {2: 1.0}}, {"a": 10}, budget=1.5)
    with pytest.raises(RuntimeError, match="calibrate"):
        Q.fake_quantize_model(tiny_vit(), 8, 8)(images(2))


# ----------------------------------------------------------------------------------------------- whole models

def test_fake_quantize_model_wraps_and_tracks_bits():
    model = tiny_vit()
    x = images()
    qm = Q.fake_quantize_model(model, weight_bits=8)
    layers = Q.fake_quant_layers(qm)
    assert set(layers) == set(Q.quantizable_layers(model))
    assert Q.quantizable_layers(model)["head"] is model.head  # the original is untouched (a copy was wrapped)
    with torch.no_grad():
        ref = model(x)
        cos8 = output_cosine_similarity(qm(x), ref)
        Q.set_bits(qm, weight_bits=2)
        cos2 = output_cosine_similarity(qm(x), ref)
    assert cos8 > 0.999 and cos2 < cos8
    Q.set_bits(qm, weight_bits={"head": 3}, act_bits=None)
    assert layers["head"].weight_bits == 3 and layers["blocks.0.attn.q"].weight_bits == 2
    w = layers["head"].quantized_weight()
    assert all(len(torch.unique(row)) <= 7 for row in w)  # 3-bit symmetric: at most 7 levels per channel


def test_calibrate_records_input_ranges_and_activation_quantization():
    model = tiny_vit("layernorm")
    x = images(128)
    qm = Q.calibrate(Q.fake_quantize_model(model, None, 8), x)
    inputs = Q.layer_inputs(model, x, (nn.Linear, nn.Conv2d))
    for name, layer in Q.fake_quant_layers(qm).items():
        assert layer.act_min.item() == pytest.approx(inputs[name].min().item(), rel=1e-5, abs=1e-6)
        assert layer.act_max.item() == pytest.approx(inputs[name].max().item(), rel=1e-5, abs=1e-6)
    with torch.no_grad():
        assert output_cosine_similarity(qm(x), model(x)) > 0.99
        Q.set_bits(qm, None, 2)
        assert output_cosine_similarity(qm(x), model(x)) < 0.99


def test_qat_through_fit_updates_the_float_weights():
    torch.manual_seed(0)
    x, y = images(64), torch.randint(0, 10, (64,))
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    qm = Q.calibrate(Q.fake_quantize_model(tiny_vit(), 4, 8), x)
    before = Q.fake_quant_layers(qm)["blocks.0.mlp.fc1"].layer.weight.detach().clone()
    hist = fit(qm, loader, None, epochs=1, lr=1e-2, device="cpu", progress=False)
    after = Q.fake_quant_layers(qm)["blocks.0.mlp.fc1"].layer.weight.detach()
    assert len(hist["train_loss"]) == 1
    assert not torch.equal(before, after)
    assert Q.fake_quant_layers(qm)["blocks.0.mlp.fc1"].weight_bits == 4


# ----------------------------------------------------------------------------------------------- real int8

def _module_types(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules()}


def _ops(graph_module: nn.Module) -> list[str]:
    return [str(n.target) for n in graph_module.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("make", [Q.dynamic_int8, Q.weight_only_int8])
def test_torchao_int8_configs(make):
    from torchao.quantization import Int8Tensor

    model = tiny_vit()
    q = make(model)
    linears = [m for m in q.modules() if isinstance(m, nn.Linear)]
    assert linears and all(isinstance(m.weight, Int8Tensor) for m in linears)
    assert all(type(m.weight) is not Int8Tensor for m in model.modules() if isinstance(m, nn.Linear))  # a copy
    assert size_on_disk(q) < 0.6 * size_on_disk(model)  # a nano model: the file's metadata is a large share
    x = images()
    with torch.no_grad():
        assert output_cosine_similarity(q(x), model(x)) > 0.99


@pytest.mark.parametrize("observer,norm", [("minmax", "dyt"), ("histogram", "layernorm")])
def test_static_int8_pt2e_keeps_the_norms_fp32(observer, norm):
    model = tiny_vit(norm)
    x = images(128)
    sq = Q.static_int8(model, x, observer=observer)
    ops = _ops(sq)
    assert sum("quantize_per_tensor" in o for o in ops) >= 4 and sum("linear" in o for o in ops) >= 4
    kind = "DynamicTanh" if norm == "dyt" else "LayerNorm"
    placed = Q.qdq_placement(sq)
    norm_ops = placed[placed.module_type == kind]
    assert len(norm_ops) and not norm_ops.int8_in.any()  # the norm computes in fp32 on dequantized inputs
    assert norm_ops.int8_out.sum() >= 1  # and its output is quantized for the Linear that follows
    linear_in = placed[placed.op == "linear"].int8_in
    assert linear_in.all()
    with torch.no_grad():
        assert output_cosine_similarity(sq(x), model(x)) > 0.98
    assert size_on_disk(sq) < 0.6 * size_on_disk(model)  # a nano model: the file's metadata is a large share
    sq.eval()  # the course's metrics call .eval() on every model; an exported module allows it here


def test_static_int8_convnet_folds_batchnorm_and_per_tensor():
    model = tiny_cnn("batchnorm")
    x = images(128, shape=SMALL)
    sq = Q.static_int8(model, [x[:64], x[64:]], observer="minmax")
    assert not any("batch_norm" in o for o in _ops(sq))
    pt = Q.static_int8(model, x, per_channel=False)
    assert any("dequantize_per_tensor" in str(n.target) and n.args[0].op == "get_attr" for n in pt.graph.nodes)
    with torch.no_grad():
        ref = model(x)
        assert output_cosine_similarity(sq(x), ref) > 0.98
        assert output_cosine_similarity(pt(x), ref) > 0.95
    assert size_on_disk(sq) < size_on_disk(model) / 2
    dyt = Q.static_int8(tiny_cnn("dyt"), x)
    assert any("tanh" in o for o in _ops(dyt))


def test_compiled_pt2e_model_matches_its_eager_graph():
    model = tiny_vit()
    x = images(16)
    sq = Q.static_int8(model, x)
    compiled = Q.compile_int8(sq)
    with torch.no_grad():
        assert output_cosine_similarity(compiled(x), sq(x)) > 0.999


def test_dyt_bound_sets_calibration_free_output_scales():
    torch.manual_seed(0)
    model = tiny_vit("dyt")
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, DynamicTanh):
                layer.weight.uniform_(0.5, 1.5)
                layer.bias.uniform_(-0.2, 0.2)
    x = images(128)
    sq = Q.static_int8(model, x, observer="minmax")
    report = Q.set_bound_qparams(sq, model)
    assert len(report) == sum(isinstance(m, DynamicTanh) for m in model.modules()) - 1  # the last feeds no Linear
    # the bound contains every value DyT can output, so it contains the calibrated range
    assert (report.bound_lo <= report.calibrated_lo + 1e-6).all()
    assert (report.bound_hi >= report.calibrated_hi - 1e-6).all()
    with torch.no_grad():
        assert output_cosine_similarity(sq(x), model(x)) > 0.95
    lo, hi = Q.dyt_bound(next(m for m in model.modules() if isinstance(m, DynamicTanh)))
    obs = MinMaxObserver(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine)
    obs(torch.tensor([lo, hi]))
    s_ref, z_ref = obs.calculate_qparams()
    s, z = Q.bound_qparams(lo, hi, 0, 255)
    assert abs(s - s_ref.item()) < 1e-6 and z == int(z_ref)
    with pytest.raises(ValueError, match="no quantize node follows"):
        Q.set_bound_qparams(Q.static_int8(tiny_vit("layernorm"), x), model)


def test_torchao_qat_flow_converts_to_int8():
    from torchao.quantization.qat import FakeQuantizedLinear

    torch.manual_seed(0)
    x, y = images(64), torch.randint(0, 10, (64,))
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    prepared = Q.qat_int8_prepare(tiny_vit("layernorm"), weight_bits=4)
    assert FakeQuantizedLinear in _module_types(prepared)
    before = prepared.blocks[0].mlp.fc1.weight.detach().clone()
    fit(prepared, loader, None, epochs=1, lr=1e-3, device="cpu", progress=False)
    assert not torch.equal(before, prepared.blocks[0].mlp.fc1.weight.detach())
    q = Q.qat_int8_convert(prepared)
    assert FakeQuantizedLinear not in _module_types(q) and nn.LayerNorm in _module_types(q)
    w = q.blocks[0].mlp.fc1.weight
    assert w.qdata.min() >= -8 and w.qdata.max() <= 7  # 4-bit weights stored in int8
    ptq = Q.ptq_int8(tiny_vit("layernorm"), weight_bits=4)
    assert type(ptq.blocks[0].mlp.fc1.weight) is type(w)
    with torch.no_grad():
        assert output_cosine_similarity(q(x), prepared.eval()(x)) > 0.95


# ----------------------------------------------------------------------------------------------- half, stats, mixed

@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision(dtype):
    model = tiny_vit()
    half = Q.HalfPrecision(model, dtype)
    assert all(p.dtype == Q.HALF_DTYPES[dtype] for p in half.parameters())
    x = images()
    with torch.no_grad():
        out = half(x)
        assert out.dtype == torch.float32
        assert output_cosine_similarity(out, model(x)) > 0.99
    assert size_on_disk(half) < 0.6 * size_on_disk(model)


def test_outlier_stats_and_activation_report():
    torch.manual_seed(7)
    g = torch.randn(200, 64)
    s = Q.outlier_stats(g)
    assert s["kurtosis"] == pytest.approx(3.0, abs=0.3)
    g2 = g.clone()
    g2[:, 5] *= 30  # one outlier channel, like LayerNorm's gamma can create
    s2 = Q.outlier_stats(g2)
    assert s2["max_over_std"] > s["max_over_std"] and s2["kurtosis"] > 10 and s2["channel_ratio"] > 10
    assert Q.quantization_error(g2, 8)["sqnr_db"] < Q.quantization_error(g, 8)["sqnr_db"]
    rows = Q.activation_report(tiny_vit(), images(32))
    assert [r["layer"] for r in rows][:4] == ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v",
                                              "blocks.0.attn.proj"]
    assert all(r["sqnr_db_8bit"] > r["sqnr_db_4bit"] for r in rows)


def test_greedy_allocation_prefers_insensitive_layers():
    sens = {"a": {2: 5.0, 4: 1.0}, "b": {2: 0.01, 4: 0.001}, "c": {2: 0.5, 4: 0.0}}
    sizes = {"a": 100, "b": 100, "c": 100}
    assign = Q.greedy_bit_allocation(sens, sizes, budget=4.0)
    assert Q.average_bits(assign, sizes) <= 4.0
    assert assign["b"] == 2 and assign["a"] >= 4
    assert Q.greedy_bit_allocation(sens, sizes, budget=8) == {"a": 8, "b": 8, "c": 8}
    assert set(Q.greedy_bit_allocation(sens, sizes, budget=2).values()) == {2}


def test_measured_greedy_sees_errors_that_compound():
    sens = {"a": {2: 0.1}, "b": {2: 0.1}, "c": {2: 0.5}}
    sizes = {"a": 100, "b": 100, "c": 100}

    def measure(assign):  # a and b are harmless alone and ruinous together; c costs 0.5 whatever the others do
        low = {n for n, b in assign.items() if b == 2}
        return 10.0 * ({"a", "b"} <= low) + 0.1 * len(low & {"a", "b"}) + 0.5 * ("c" in low)

    assert Q.greedy_bit_allocation(sens, sizes, budget=4.0) == {"a": 2, "b": 2, "c": 8}  # the additive proxy
    path = Q.greedy_bit_path(sens, sizes, [6.0, 4.0], measure=measure)
    assert path[6.0] == {"a": 2, "b": 8, "c": 8} and path[4.0] == {"a": 2, "b": 8, "c": 2}
    with pytest.raises(ValueError, match="shortlist"):
        Q.greedy_bit_path(sens, sizes, [4.0], measure=measure, shortlist=0)


def test_measured_greedy_on_a_model_is_one_monotone_descent():
    model = tiny_vit()
    x, y = images(64), torch.randint(0, 10, (64,))
    qm = Q.fake_quantize_model(model, weight_bits=8)
    sens = Q.layer_sensitivity(qm, x, y, bits=(2, 4))
    sizes = Q.weight_sizes(qm)
    path = Q.greedy_bit_path(sens, sizes, [5.0, 3.0], measure=Q.assignment_loss(qm, x, y), shortlist=2)
    assert Q.average_bits(path[5.0], sizes) <= 5.0 and Q.average_bits(path[3.0], sizes) <= 3.0
    assert all(path[3.0][n] <= path[5.0][n] for n in sizes)  # the lower budget continues the same descent
    with pytest.raises(ValueError, match="FakeQuantLayer"):
        Q.assignment_loss(model, x, y)


def test_layer_sensitivity_restores_bits():
    model = tiny_vit()
    x, y = images(64), torch.randint(0, 10, (64,))
    qm = Q.fake_quantize_model(model, weight_bits=6)
    sens = Q.layer_sensitivity(qm, x, y, bits=(2, 4))
    assert set(sens) == set(Q.weight_sizes(qm)) == set(Q.quantizable_layers(model))
    assert all(layer.weight_bits == 6 for layer in Q.fake_quant_layers(qm).values())
    assert sum(abs(v[2]) for v in sens.values()) > sum(abs(v[4]) for v in sens.values())
    text = Q.describe_assignment({"blocks.0.attn.q": 4, "blocks.1.attn.q": 2, "head": 8})
    assert text == "q=4,2 head=8"


def test_features_of_a_pt2e_int8_convnet_are_read_from_its_graph():
    from course_utils.metrics import logits_and_features

    model = tiny_cnn("batchnorm").eval()
    x = images(128, shape=SMALL)
    sq = Q.static_int8(model, x, observer="minmax")
    y = torch.zeros(len(x), dtype=torch.long)
    q_logits, q_feat, _ = logits_and_features(sq, [(x, y)])
    f_logits, f_feat, _ = logits_and_features(model, [(x, y)])
    assert q_feat.dtype == torch.float32 and q_feat.shape == f_feat.shape
    assert output_cosine_similarity(q_feat, f_feat) > 0.95
    with pytest.raises(ValueError, match="no `head`"):
        logits_and_features(nn.Sequential(nn.Linear(64, 2)), [(x.flatten(1)[:, :64], y)])


def test_ood_detectors_run_on_a_pt2e_int8_convnet():
    from course_utils.robustness import evaluate_ood

    model = tiny_cnn("batchnorm").eval()
    x = images(96, shape=SMALL)
    sq = Q.static_int8(model, x, observer="minmax")
    y = torch.arange(96) % 10
    noise = [(torch.rand(48, *x.shape[1:]), torch.zeros(48, dtype=torch.long))]
    table = evaluate_ood(sq, [(x, y)], [(x[:48], y[:48])], {"noise": noise})
    assert {"vim", "mahalanobis", "knn"} <= set(table.detector) and table.AUROC.between(0, 1).all()
