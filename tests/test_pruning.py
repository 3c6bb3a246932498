
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from course_utils.data import get_data
from course_utils.metrics import count_parameters
from course_utils.models import ConvNet, DynamicTanh, build_model, track_norms
from course_utils.modules import clone_model, effective_weight
from course_utils.pruning import (
    GradualPruner,
    LowRankLinear,
    ThresholdPruner,
    ThresholdPruning,
    channel_importance,
    choose_rank,
    cubic_sparsity,
    dense_from_sparse,
    factorize_linear,
    global_prune,
    global_sparsity,
    global_threshold,
    largest_sparsity_within,
    layer_threshold,
    layerwise_prune,
    ln_importance,
    low_rank_factorize,
    low_rank_layers,
    magnitude_mask,
    make_permanent,
    prunable_layers,
    prune_attention_heads,
    prune_by_threshold,
    prune_conv_channels,
    prune_ffn_neurons,
    sensitivity_scan,
    sparse_size_on_disk,
    sparse_state_dict,
    sparsity_report,
    structured_prune,
    threshold_prune,
    units_to_keep,
)
from course_utils.train import evaluate, fit


def _vit(norm="dyt", size="nano"):
    m = build_model("vit", norm, 10, (1, 8, 8), size).eval()
    with torch.no_grad():  # trained-looking weights: larger than the init's std 0.02, and not all equal
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


def _cnn(norm="dyt"):
    m = build_model("cnn", norm, 10, (1, 8, 8), "tiny")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m.train()
    m(torch.randn(32, 1, 8, 8) * 2 + 0.5)  # non-trivial BatchNorm running statistics
    return m.eval()


@pytest.fixture(scope="module")
def digits():
    return get_data("digits", batch_size=64, subset=256, test_subset=200, seed=0)


# ------------------------------------------------------------------------------------------- unstructured

def test_threshold_pruning_masks_small_magnitudes_and_composes():
    lin = nn.Linear(20, 10)
    w = lin.weight.detach().clone()
    threshold_prune(lin, "weight", 0.1)
    assert torch.equal(lin.weight_mask, (w.abs() >= 0.1).float())
    assert torch.equal(lin.weight, w * (w.abs() >= 0.1))
    assert torch.equal(ThresholdPruning(0.1).compute_mask(w, torch.ones_like(w)), magnitude_mask(w, 0.1))
    threshold_prune(lin, "weight", 0.15)  # a second pass goes through torch's PruningContainer
    assert torch.equal(lin.weight_mask, (w.abs() >= 0.15).float())


@pytest.mark.parametrize("tau", [-0.1, float("nan"), float("inf")])
def test_bad_tau_is_a_value_error(tau):
    with pytest.raises(ValueError, match="tau"):
        threshold_prune(nn.Linear(3, 3), "weight", tau)
    with pytest.raises(ValueError, match="tau"):
        prune_by_threshold(_vit(), tau)
    with pytest.raises(ValueError, match="tau"):
        magnitude_mask(torch.ones(3), tau)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, True])
def test_sparsity_outside_unit_interval_is_a_value_error(sparsity):
    for fn in (layerwise_prune, global_prune):
        with pytest.raises(ValueError, match=r"sparsity.*\[0, 1\)"):
            fn(_vit(), sparsity)
    with pytest.raises(ValueError, match="sparsity"):
        global_threshold([torch.randn(5)], sparsity)
    with pytest.raises(ValueError, match="final_sparsity"):
        GradualPruner(_vit(), sparsity, total_steps=10)


def test_model_without_prunable_layers_is_a_value_error():
    empty = nn.Sequential(nn.ReLU(), nn.Dropout())
    for call in (lambda: global_prune(empty, 0.5), lambda: layerwise_prune(empty, 0.5),
                 lambda: prune_by_threshold(empty, 0.1), lambda: sparsity_report(empty),
                 lambda: GradualPruner(empty, 0.5, 10), lambda: low_rank_factorize(empty, rank=2)):
        with pytest.raises(ValueError, match="no prunable layers"):
            call()
    with pytest.raises(ValueError, match="not modules with a weight"):
        prunable_layers(_vit(), ["blocks.0.nope"])


def test_layerwise_prunes_each_layer_equally_and_global_matches_kthvalue():
    m = _vit()
    layerwise_prune(m, 0.6)
    for name, layer in prunable_layers(m).items():
        w = effective_weight(layer)
        assert (w == 0).sum().item() == round(0.6 * w.numel()), name
    g = _vit()
    weights = [effective_weight(x).clone() for x in prunable_layers(g).values()]
    thr = global_threshold(weights, 0.7)
    global_prune(g, 0.7)
    assert global_sparsity(g) == pytest.approx(0.7, abs=1e-4)
    for w, layer in zip(weights, prunable_layers(g).values()):  # exactly the weights with |w| <= kthvalue
        assert torch.equal(effective_weight(layer) == 0, w.abs() <= thr)
    per_layer = [(effective_weight(x) == 0).float().mean().item() for x in prunable_layers(g).values()]
    assert max(per_layer) - min(per_layer) > 0.05  # global pruning is not uniform across layers
    assert global_threshold(weights, 0.0) == 0.0


def test_scale_free_thresholds_do_not_depend_on_the_weight_scale():
    a, b = _vit(), _vit()
    with torch.no_grad():
        for p, q in zip(a.parameters(), b.parameters()):
            q.copy_(10 * p)
    for scale, tau in (("std", 0.8), ("quantile", 0.4)):
        sa, sb = clone_model(a), clone_model(b)
        prune_by_threshold(sa, tau, scale=scale)
        prune_by_threshold(sb, tau, scale=scale)
        assert global_sparsity(sa) == pytest.approx(global_sparsity(sb), abs=1e-6)
    sa, sb = clone_model(a), clone_model(b)
    prune_by_threshold(sa, 0.2)
    prune_by_threshold(sb, 0.2)
    assert global_sparsity(sa) > global_sparsity(sb) + 0.3  # the absolute tau does
    assert global_sparsity(clone_model(a)) == 0
    w = torch.randn(1000)
    assert layer_threshold(w, 0.5, "quantile") == pytest.approx(w.abs().quantile(0.5).item())
    with pytest.raises(ValueError, match="scale"):
        layer_threshold(w, 0.5, "median")


def test_make_permanent_folds_masks_and_keeps_the_function():
    m = _vit()
    global_prune(m, 0.5)
    x = torch.randn(4, 1, 8, 8)
    before = m(x)
    c = clone_model(m)  # deepcopy works on a freshly pruned model
    make_permanent(m)
    assert not any(n.endswith("_orig") or n.endswith("_mask") for n, _ in m.named_parameters())
    assert not any(n.endswith("weight_mask") for n, _ in m.named_buffers())
    assert torch.allclose(m(x), before)
    assert torch.allclose(c(x), before)
    assert count_parameters(m)["total"] == count_parameters(_vit())["total"]


def test_sparsity_report_counts_per_layer_and_overall():
    m = _vit()
    prune.l1_unstructured(m.head, "weight", amount=0.5)
    df = sparsity_report(m).set_index("layer")
    assert df.loc["head", "sparsity"] == pytest.approx(0.5)
    assert df.loc["blocks.0.mlp.fc1", "sparsity"] == 0
    assert df.loc["all pruned layers", "zeros"] == m.head.weight.numel() // 2
    assert df.loc["all parameters", "nonzero"] == count_parameters(m)["nonzero"]


def test_largest_sparsity_within_tolerance():
    s, acc = [0.0, 0.5, 0.8, 0.9], [0.95, 0.948, 0.941, 0.80]
    assert largest_sparsity_within(s, acc, 0.95) == 0.8
    assert largest_sparsity_within(s, acc, 0.95, tolerance=0.005) == 0.5
    assert largest_sparsity_within([0.5], [0.1], 0.95) == 0.0


def test_sensitivity_scan_prunes_one_layer_at_a_time(digits):
    m = _vit()
    df = sensitivity_scan(m, digits.test_loader, [0.0, 0.9], layers=["head", "blocks.0.mlp.fc1"])
    assert list(df.columns) == ["layer", "sparsity", "accuracy"] and len(df) == 4
    dense = evaluate(m, digits.test_loader)["accuracy"]
    assert (df[df.sparsity == 0].accuracy == dense).all()
    assert global_sparsity(m) == 0  # the model itself is untouched


# ------------------------------------------------------------------------------------- in the training loop

def test_cubic_schedule_endpoints_and_shape():
    assert cubic_sparsity(0, 0.9, 100) == 0.0
    assert cubic_sparsity(100, 0.9, 100) == pytest.approx(0.9)
    assert cubic_sparsity(500, 0.9, 100) == pytest.approx(0.9)
    assert cubic_sparsity(50, 0.9, 100) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    s = [cubic_sparsity(t, 0.8, 50, start_step=10) for t in range(80)]
    assert all(b >= a for a, b in zip(s, s[1:])) and s[10] == 0.0
    assert s[12] - s[11] > s[58] - s[57]  # prunes fast early, slowly late


def test_gradual_pruner_reaches_target_and_keeps_pruned_weights_at_zero(digits):
    m = _vit()
    steps = 2 * len(digits.train_loader)
    gp = GradualPruner(m, 0.75, total_steps=steps, frequency=1)
    h = fit(m, digits.train_loader, None, epochs=2, lr=1e-3, progress=False, device="cpu", after_step=gp,
            after_epoch=track_norms())
    assert gp.sparsity() == pytest.approx(0.75, abs=1e-3)
    assert global_sparsity(m) == pytest.approx(0.75, abs=1e-3)
    hist = [s for _, s in gp.history]
    assert hist == sorted(hist) and hist[0] < 0.3
    for layer in prunable_layers(m).values():  # masks re-applied after every step: stored weights are zero too
        assert torch.all(layer.weight_orig[layer.weight_mask == 0] == 0)
    assert "alpha/blocks.0.norm1" in h and len(h["alpha/blocks.0.norm1"]) == 2
    with pytest.raises(ValueError, match="scope"):
        GradualPruner(_vit(), 0.5, 10, scope="random")


def test_threshold_pruner_keeps_only_weights_above_tau(digits):
    m = _vit()
    tp = ThresholdPruner(m, 0.15, ramp_steps=3)
    fit(m, digits.train_loader, None, epochs=1, lr=1e-3, progress=False, device="cpu", after_step=tp)
    assert tp.tau_at(1) == pytest.approx(1 / 3) and tp.tau_at(10) == 1.0
    for layer in prunable_layers(m).values():
        w = effective_weight(layer)
        assert torch.all(w[w != 0].abs() >= 0.15 - 1e-6)
    assert 0.3 < tp.sparsity() < 1.0


# ---------------------------------------------------------------------------------------------- structured

@pytest.mark.parametrize("norm", ["dyt", "layernorm"])
@pytest.mark.parametrize("fn", [prune_ffn_neurons, prune_attention_heads, structured_prune])
def test_vit_structured_pruning_is_smaller_and_computes_the_masked_function(fn, norm):
    m = _vit(norm, "tiny")  # 3 heads, FFN 96
    x = torch.randn(6, 1, 8, 8)
    small, masked = fn(m, 0.34), fn(m, 0.34, physical=False)
    assert torch.allclose(small(x), masked(x), atol=1e-5)
    assert not torch.allclose(small(x), m(x), atol=1e-3)  # something was removed
    assert count_parameters(small)["total"] < count_parameters(m)["total"]
    assert count_parameters(masked)["total"] >= count_parameters(m)["total"]
    if fn is not prune_ffn_neurons:
        assert all(b.attn.num_heads == 2 and b.attn.q.out_features == 2 * b.attn.head_dim
                   and b.attn.head_mask.numel() == 2 for b in small.blocks)
    if fn is not prune_attention_heads:
        assert all(b.mlp.fc1.out_features == 96 - 33 and b.mlp.fc2.in_features == 96 - 33 for b in small.blocks)


def test_ffn_neuron_choice_matches_torch_ln_structured():
    m = _vit("dyt", "tiny")
    masked = prune_ffn_neurons(m, 0.5, p=2, physical=False)
    for b_ours, b_ref in zip(masked.blocks, clone_model(m).blocks):
        prune.ln_structured(b_ref.mlp.fc1, "weight", amount=0.5, n=2, dim=0)
        assert torch.equal(b_ours.mlp.fc1.weight_mask, b_ref.mlp.fc1.weight_mask)


@pytest.mark.parametrize("norm", ["dyt", "batchnorm", "identity"])
def test_cnn_channel_pruning_is_smaller_and_computes_the_masked_function(norm):
    m = _cnn(norm)
    x = torch.randn(5, 1, 8, 8)
    small, masked = prune_conv_channels(m, 0.5), prune_conv_channels(m, 0.5, physical=False)
    assert torch.allclose(small(x), masked(x), atol=1e-5)
    widths = [b.conv.out_channels for b in small.blocks]
    assert widths == [8, 16, 32] and small.head.in_features == 32
    assert [b.conv.in_channels for b in small.blocks] == [1, 8, 16]
    if norm == "dyt":
        assert isinstance(small.blocks[0].norm, DynamicTanh) and small.blocks[0].norm.weight.shape == (8,)
        assert small.blocks[1].norm.alpha.item() == m.blocks[1].norm.alpha.item()
    if norm == "batchnorm":
        keep = units_to_keep(channel_importance(m)[0], 0.5)
        assert torch.equal(small.blocks[0].norm.running_var, m.blocks[0].norm.running_var[keep])
        assert not small.blocks[0].norm.training
    assert isinstance(small, ConvNet)


def test_structured_pruning_that_removes_every_unit_is_a_value_error():
    with pytest.raises(ValueError, match="would remove all"):
        prune_attention_heads(_vit("dyt", "nano"), 0.8)  # 2 heads: round(1.6) = 2
    with pytest.raises(ValueError, match="would remove all"):
        prune_conv_channels(_cnn(), 0.99)
    with pytest.raises(ValueError, match="would remove all"):
        units_to_keep(torch.ones(4), 0.9)
    with pytest.raises(ValueError, match="amount"):
        prune_ffn_neurons(_vit(), 1.0)
    with pytest.raises(ValueError, match="ViT and ConvNet"):
        structured_prune(nn.Sequential(nn.Linear(3, 3)), 0.5)
    with pytest.raises(ValueError, match="ConvNet"):
        prune_conv_channels(_vit(), 0.5)


def test_ln_importance_and_units_to_keep():
    w = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]])
    assert torch.allclose(ln_importance(w, p=2), torch.tensor([5.0, 1.0, 2.0]))
    assert torch.allclose(ln_importance(w, p=1, dim=1), torch.tensor([4.0, 6.0]))
    assert units_to_keep(torch.tensor([5.0, 1.0, 2.0]), 0.34).tolist() == [0, 2]
    conv = torch.randn(4, 3, 3, 3)
    assert torch.allclose(ln_importance(conv), conv.flatten(1).norm(dim=1))


# ---------------------------------------------------------------------------------------------- low rank

def test_truncated_svd_is_the_best_rank_r_approximation():
    lin = nn.Linear(24, 16)
    s = torch.linalg.svdvals(lin.weight.detach().double())
    for r in (1, 4, 16):
        f = factorize_linear(lin, rank=r)
        approx = (f.up.weight @ f.down.weight).double()
        err = torch.linalg.matrix_norm(approx - lin.weight.detach().double())
        assert err.item() == pytest.approx(s[r:].pow(2).sum().sqrt().item(), abs=1e-5)  # Eckart-Young
    x = torch.randn(3, 24)
    assert torch.allclose(factorize_linear(lin, rank=16)(x), lin(x), atol=1e-5)
    assert choose_rank(torch.tensor([3.0, 1.0, 1.0]), energy=0.8) == 1  # 9/11 >= 0.8
    assert choose_rank(torch.tensor([3.0, 1.0, 1.0]), energy=0.9) == 2
    assert choose_rank(torch.tensor([3.0, 1.0, 1.0]), rank=10) == 3
    for kwargs in ({}, {"rank": 2, "energy": 0.5}, {"rank": 0}, {"energy": 1.5}):
        with pytest.raises(ValueError):
            choose_rank(s, **kwargs)


def test_low_rank_factorize_replaces_linears_only_when_smaller():
    m = _vit("dyt", "small")  # dim 64: q/k/v 64x64 shrink for rank < 32, head 64->10 for rank < 9
    lr = low_rank_factorize(m, rank=8)
    names = set(low_rank_layers(lr))
    assert "blocks.0.attn.q" in names and "blocks.3.mlp.fc2" in names and "head" in names
    assert count_parameters(lr)["total"] < count_parameters(m)["total"]
    assert "head" not in low_rank_layers(low_rank_factorize(m, rank=12))
    assert isinstance(lr.blocks[0].attn.q, LowRankLinear) and lr.blocks[0].attn.q.rank == 8
    full = low_rank_factorize(m, rank=10_000, only_if_smaller=False)
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(full(x), m(x), atol=1e-4)
    assert isinstance(m.blocks[0].attn.q, nn.Linear)  # the input model is untouched


# ----------------------------------------------------------------------------------------- storage, speed

def test_sparse_storage_round_trips_and_is_smaller_when_sparse():
    m = _vit("dyt", "small")
    global_prune(m, 0.9)
    ref = make_permanent(clone_model(m)).state_dict()
    dense_bytes = sparse_size_on_disk(_vit("dyt", "small"), "bitmask")  # nothing sparse: stored dense
    for fmt in ("coo", "csr", "bitmask"):
        back = dense_from_sparse(sparse_state_dict(m, fmt), ref)
        assert all(torch.equal(back[k], ref[k]) for k in ref), fmt
        assert sparse_size_on_disk(m, fmt) < dense_bytes, fmt
    assert sparse_size_on_disk(m, "bitmask") < sparse_size_on_disk(m, "csr") < sparse_size_on_disk(m, "coo")
    with pytest.raises(ValueError, match="fmt"):
        sparse_state_dict(m, "zip")


def test_csr_linear_computes_the_same_function():
    from course_utils.pruning import CSRLinear

    lin = nn.Linear(32, 16)
    prune.l1_unstructured(lin, "weight", amount=0.9)
    csr = CSRLinear(lin)
    x = torch.randn(3, 5, 32)
    torch.testing.assert_close(csr(x), lin(x), atol=1e-5, rtol=1e-5)
    assert csr.weight.layout == torch.sparse_csr and csr.weight.values().numel() == round(0.1 * 32 * 16)
    with pytest.raises(ValueError, match="nn.Linear"):
        CSRLinear(nn.Conv2d(1, 1, 1))
