import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from course_utils.data import get_data
from course_utils.metrics import (
    accuracy,
    amdahl_speedup,
    benchmark,
    count_flops,
    count_parameters,
    model_report,
    op_time_breakdown,
    output_cosine_similarity,
    size_on_disk,
)
from course_utils.models import ViT, build_model


def test_parameter_counts_by_hand_and_with_pruning_masks():
    m = nn.Linear(4, 3)  # 12 weights + 3 biases
    with torch.no_grad():
        m.weight[0] = 0
    assert count_parameters(m) == {"total": 15, "nonzero": 11, "zero": 4}
    prune.l1_unstructured(m, "weight", amount=0.5)  # masks 6 of 12 weights (the 4 zeros among them)
    assert count_parameters(m) == {"total": 15, "nonzero": 9, "zero": 6}


def test_size_on_disk_grows_with_parameters():
    small, big = size_on_disk(nn.Linear(10, 10)), size_on_disk(nn.Linear(100, 100))
    assert big - small == pytest.approx((100 * 100 + 100 - 110) * 4, rel=0.02)
    assert size_on_disk(nn.Linear(100, 100).half()) < 0.55 * big


def test_flops_linear_and_conv_by_hand():
    mlp = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    assert count_flops(mlp, torch.zeros(4, 10)) == 2 * 4 * (10 * 20 + 20 * 3)
    conv = nn.Conv2d(1, 8, 3, padding=1)
    assert count_flops(conv, torch.zeros(1, 1, 6, 6)) == 2 * 8 * 9 * 36


def test_flops_count_cpu_attention():
    dim, heads, n_tok = 32, 2, 17  # 28x28 input, 7x7 patches -> 16 tokens + CLS
    v = ViT(28, 1, 10, dim=dim, depth=1, heads=heads, mlp_ratio=2)
    patch = 2 * 16 * (49 * dim)
    block_linear = 2 * n_tok * (3 * dim * dim + dim * dim + 2 * dim * 2 * dim)
    attention = 2 * 2 * n_tok * n_tok * dim  # QK^T and AV over all heads
    head = 2 * dim * 10
    assert count_flops(v, torch.zeros(1, 1, 28, 28)) == patch + block_linear + attention + head


def test_benchmark_times_side_by_side_with_paired_speedups():
    small = nn.Sequential(nn.Linear(64, 64))
    big = nn.Sequential(nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 64))
    df = benchmark({"big": big, "small": small}, (64,), batch_sizes=(1, 256), rounds=3, min_run_time=0.02)
    assert list(df.index) == ["big", "small"]
    assert df.loc["big", "speedup_b1"] == 1.0 and df.loc["big", "speedup_b256"] == 1.0
    assert df.loc["small", "speedup_b256"] > 2, "a 64x64 layer should beat a 64->2048->64 MLP at batch 256"
    assert 0 < df.loc["small", "ms_b1"] < df.loc["big", "ms_b256"]
    assert (df.filter(like="spread_") >= 0).all().all()
    assert len(df.attrs["times"]["small|256"]) == 3
    assert torch.is_grad_enabled(), "benchmarking switched autograd off for the rest of the process"
    # any callable can be timed, e.g. an edge runtime's predict function
    df = benchmark({"model": small, "fn": lambda x: small(x).numpy()}, inputs={4: torch.randn(4, 64)}, rounds=1,
                   min_run_time=0.01, baseline="fn")
    assert df.loc["fn", "speedup_b4"] == 1.0
    with pytest.raises(ValueError, match="baseline='nope'"):
        benchmark({"a": small}, (64,), baseline="nope")
    with pytest.raises(ValueError, match="rounds=0"):
        benchmark({"a": small}, (64,), rounds=0)
    with pytest.raises(ValueError, match="candidates is empty"):
        benchmark({}, (64,))


def test_pruned_count_is_never_stale():
    from course_utils.pruning import GradualPruner

    m = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32))
    pruner = GradualPruner(m, 0.5, total_steps=1, frequency=1)
    pruner(m, 1)  # masks reach 50% before any forward pass refreshed module.weight
    masked = sum(int((lin.weight_mask == 0).sum()) for lin in m)
    assert count_parameters(m)["zero"] == masked == 1024


def test_accuracy_and_cosine_similarity():
    bundle = get_data("digits", batch_size=64)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    acc = accuracy(m, bundle.test_loader)
    assert 0 <= acc <= 1
    assert output_cosine_similarity(m, m, bundle.test_loader) == pytest.approx(1.0, abs=1e-6)
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 5.0]])
    assert output_cosine_similarity(a, b) == pytest.approx(0.5)
    neg = nn.Sequential(m, nn.Identity())
    with torch.no_grad():
        m2 = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        m2[1].weight.copy_(-m[1].weight)
        m2[1].bias.copy_(-m[1].bias)
    assert output_cosine_similarity(neg, m2, bundle.test_loader) == pytest.approx(-1.0, abs=1e-5)


def test_model_report_row():
    bundle = get_data("digits", batch_size=64)
    m = ViT(8, 1, 10, dim=16, depth=1, heads=2)
    df = model_report({"vit": m, "same": m}, bundle.test_loader, (1, 8, 8), batch_sizes=(1, 8), rounds=1,
                      min_run_time=0.02)
    assert set(df.columns) >= {"accuracy", "params", "nonzero_params", "size_kb", "mflops", "ms_b1", "ms_b8",
                               "speedup_b1"}
    assert df.loc["vit", "params"] == sum(p.numel() for p in m.parameters())


def test_op_time_breakdown_and_amdahl():
    m = build_model("vit", "dyt", 10, (1, 8, 8), "nano").eval()
    df = op_time_breakdown(m, torch.randn(8, 1, 8, 8), repeats=2)
    assert df.share.sum() == pytest.approx(1.0) and (df.ms > 0).all()
    assert "aten::addmm" in set(df.op) and df[df.op == "aten::addmm"].matrix.all()
    assert "aten::tanh" in set(df.op) and not df[df.op == "aten::tanh"].matrix.any()  # DyT is elementwise
    assert amdahl_speedup(1.0, 4.0) == pytest.approx(4.0)
    assert amdahl_speedup(0.5, 4.0) == pytest.approx(1 / 0.625)
    assert amdahl_speedup(0.0, 4.0) == 1.0
    assert amdahl_speedup(0.5, 4.0, other_reduction=2.0) == pytest.approx(1 / (0.125 + 0.25))
    with pytest.raises(ValueError):
        amdahl_speedup(1.5, 2.0)


@pytest.mark.parametrize("batch", [1, 32])
def test_op_time_breakdown_counts_every_convolution_kernel(batch):
    """At batch 1 PyTorch's CPU convolution of a small ConvNet takes the slow im2col + GEMM path
    (aten::thnn_conv2d -> aten::_slow_conv2d_forward), at large batches oneDNN (aten::mkldnn_convolution): whichever
    kernel runs, its time is matrix work, and the dispatch wrappers around it are not."""
    m = build_model("cnn", "dyt", 10, (1, 28, 28), "small").eval()
    df = op_time_breakdown(m, torch.randn(batch, 1, 28, 28), repeats=2)
    wrappers = {"aten::conv2d", "aten::convolution", "aten::_convolution", "aten::thnn_conv2d", "aten::linear"}
    kernels = df[df.op.str.contains("conv") & ~df.op.isin(wrappers)]
    assert len(kernels), f"no convolution kernel in the profile: {list(df.op)}"
    assert kernels.matrix.all(), f"convolution kernels not counted as matrix ops: {list(kernels.op[~kernels.matrix])}"
    assert not df[df.op.isin(wrappers)].matrix.any(), "dispatch wrappers are a fixed per-call cost, not matrix work"
    assert not df[df.op.isin(["aten::tanh", "aten::max_pool2d_with_indices"])].matrix.any()


def test_accuracy_on_tensors_equals_accuracy_on_a_loader():
    bundle = get_data("digits", batch_size=64)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.cat([b[0] for b in bundle.test_loader])
    y = torch.cat([b[1] for b in bundle.test_loader])
    assert accuracy(m, (x, y)) == accuracy(m, bundle.test_loader)
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(m, (x, y[:-1]))


def test_latency_ratio_is_paired_by_round_and_respects_noise():
    """Two candidates timed in one call: the ratio of each round's times, "within noise" unless the rounds agree."""
    import pandas as pd

    from course_utils.metrics import latency_ratio

    bench = pd.DataFrame(index=["a", "b", "c"])
    bench.attrs["times"] = {"a|1": [1.0, 2.0, 1.0, 2.0, 1.0], "b|1": [2.0, 4.0, 2.0, 4.0, 2.0],  # a always half of b
                            "c|1": [1.0, 4.0, 1.5, 2.5, 2.0]}
    r = latency_ratio(bench, "a", "b", 1)
    assert r.median == pytest.approx(0.5) and r.q1 == r.q3 == pytest.approx(0.5) and r.rounds == 5
    assert r.verdict(("DyT", "LN")).startswith("DyT is 2.00x faster")
    # the ratio of the medians of separately noisy columns would read 1.0; paired rounds see the spread
    noisy = latency_ratio(bench, "c", "a", 1)
    assert noisy.verdict().startswith("within noise") or noisy.q1 > 1
    assert latency_ratio(bench, "b", "a", 1).verdict().startswith("b is 2.00x slower")
    with pytest.raises(ValueError, match="'z' at batch 1 is not in this benchmark"):
        latency_ratio(bench, "z", "a", 1)


def test_latency_ratio_on_a_real_benchmark():
    from course_utils.metrics import benchmark, latency_ratio

    small, big = torch.nn.Linear(64, 64), torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(40)])
    b = benchmark({"small": small, "big": big}, (64,), (8,), rounds=5, min_run_time=0.01)
    r = latency_ratio(b, "small", "big", 8)
    assert r.median < 0.5 and r.verdict().startswith("small is")
