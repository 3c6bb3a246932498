import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from course_utils.data import get_data
from course_utils.metrics import (
    accuracy,
    count_flops,
    count_parameters,
    measure_latency,
    model_report,
    output_cosine_similarity,
    size_on_disk,
)
from course_utils.models import ViT


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


def test_latency_is_positive_and_bigger_batch_costs_more():
    m = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
    t1 = measure_latency(m, torch.randn(1, 256), min_run_time=0.05)
    t512 = measure_latency(m, torch.randn(512, 256), min_run_time=0.05)
    assert 0 < t1 < t512
    assert torch.is_grad_enabled(), "measuring latency switched autograd off for the rest of the process"


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
    row = model_report(m, bundle.test_loader, (1, 8, 8), batch_sizes=(1, 8), min_run_time=0.02)
    assert set(row) >= {"accuracy", "params", "nonzero_params", "size_kb", "mflops", "latency_ms_b1", "latency_ms_b8"}
    assert row["params"] == sum(p.numel() for p in m.parameters())
