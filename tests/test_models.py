import pytest
import torch
import torchvision
from torch import nn

from course_utils.models import (
    VIT_PRESETS,
    ConvNet,
    DynamicTanh,
    ViT,
    build_model,
    convert_norm_to_dyt,
    dyt_layers,
    norm_parameters,
    norm_snapshot,
    norm_trajectory,
    track_norms,
)


def test_dyt_matches_formula_channels_last():
    dyt = DynamicTanh(6, alpha_init_value=0.5)
    assert dyt.alpha.shape == (1,) and dyt.alpha.item() == 0.5
    assert torch.equal(dyt.weight, torch.ones(6)) and torch.equal(dyt.bias, torch.zeros(6))
    with torch.no_grad():
        dyt.alpha.fill_(1.7)
        dyt.weight.copy_(torch.randn(6))
        dyt.bias.copy_(torch.randn(6))
    x = torch.randn(4, 5, 6) * 3
    expected = dyt.weight * torch.tanh(1.7 * x) + dyt.bias
    torch.testing.assert_close(dyt(x), expected)


def test_dyt_channels_first_broadcasts_over_hw():
    dyt = DynamicTanh(3, channels_last=False)
    with torch.no_grad():
        dyt.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        dyt.bias.copy_(torch.tensor([0.0, 0.5, 1.0]))
    x = torch.randn(2, 3, 4, 4)
    out = dyt(x)
    for c in range(3):
        torch.testing.assert_close(out[:, c], dyt.weight[c] * torch.tanh(0.5 * x[:, c]) + dyt.bias[c])


def test_dyt_output_is_bounded_by_weight_and_bias():
    dyt = DynamicTanh(8)
    with torch.no_grad():
        dyt.weight.copy_(torch.randn(8))
        dyt.bias.copy_(torch.randn(8))
    out = dyt(torch.randn(1000, 8) * 100)
    assert torch.all(out <= dyt.bias + dyt.weight.abs() + 1e-6)
    assert torch.all(out >= dyt.bias - dyt.weight.abs() - 1e-6)


def test_alpha_is_learnable_and_gets_gradient():
    dyt = DynamicTanh(4)
    dyt(torch.randn(3, 4)).sum().backward()
    assert dyt.alpha.grad is not None and dyt.alpha.grad.shape == (1,)


def test_convert_torchvision_vit_replaces_every_layernorm():
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=10)
    n_ln = sum(isinstance(m, nn.LayerNorm) for m in vit.modules())
    assert n_ln == 5
    convert_norm_to_dyt(vit)
    assert not any(isinstance(m, nn.LayerNorm) for m in vit.modules())
    assert len(dyt_layers(vit)) == n_ln
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_convert_resnet18_batchnorm_only_on_request():
    net = torchvision.models.resnet18(num_classes=10)
    convert_norm_to_dyt(net)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules()), "BN converted without convert_batchnorm"
    convert_norm_to_dyt(net, convert_batchnorm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    layers = dyt_layers(net)
    assert all(not m.channels_last for m in layers.values())
    assert layers["bn1"].weight.shape == (64,)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_convert_returns_dyt_for_a_bare_layernorm():
    out = convert_norm_to_dyt(nn.LayerNorm(7))
    assert isinstance(out, DynamicTanh) and out.normalized_shape == (7,)


@pytest.mark.parametrize("norm", ["layernorm", "dyt", "identity"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_vit_shapes_and_names(norm, shape):
    m = build_model("vit", norm, 10, shape, "nano")
    assert m(torch.randn(2, *shape)).shape == (2, 10)
    names = dict(m.named_modules())
    for key in ("patch_embed", "blocks.0.norm1", "blocks.0.attn.q", "blocks.0.attn.proj", "blocks.1.mlp.fc1", "head"):
        assert key in names


def test_attention_head_mask_removes_one_head():
    m = ViT(28, 1, 10, dim=32, depth=1, heads=2).eval()
    attn = m.blocks[0].attn
    x = torch.randn(3, 1, 28, 28)
    base = m(x)
    attn.head_mask[1] = 0
    masked = m(x)
    # zeroing head 1 by mask equals zeroing its columns of the output projection
    attn.head_mask[1] = 1
    with torch.no_grad():
        attn.proj.weight[:, attn.head_dim:] = 0
    torch.testing.assert_close(m(x), masked)
    assert not torch.allclose(base, masked)


def test_convnet_and_presets():
    m = ConvNet(3, 10, (8, 16), norm="dyt")
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert set(VIT_PRESETS) >= {"nano", "tiny", "small", "base"}
    sizes = [sum(p.numel() for p in build_model("vit", "dyt", 10, (1, 28, 28), s).parameters())
             for s in ("nano", "tiny", "small", "base")]
    assert sizes == sorted(sizes)


def test_norm_parameters_reports_alpha():
    params = norm_parameters(build_model("vit", "dyt", 10, (1, 28, 28), "nano"))
    assert params["norm"]["alpha"] == pytest.approx(0.5)
    assert "alpha" not in norm_parameters(build_model("vit", "layernorm", 10, (1, 28, 28), "nano"))["norm"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="mlp"), "name='mlp'.*'vit', 'cnn'"),
    (dict(name="vit", norm="batchnorm"), "norm='batchnorm'.*'layernorm', 'dyt', 'derf', 'identity'"),
    (dict(name="cnn", norm="layernorm"), "norm='layernorm'.*'batchnorm', 'dyt', 'identity'"),
    (dict(name="vit", size="huge"), "size='huge'"),
])
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


def test_norm_snapshot_and_trajectory():
    dyt = build_model("vit", "dyt", 10, (1, 8, 8), "nano")
    ln = build_model("vit", "layernorm", 10, (1, 8, 8), "nano")
    with torch.no_grad():
        dyt.norm.weight.uniform_(0.5, 1.5)
    snap = norm_snapshot(dyt)
    assert snap["alpha/blocks.0.norm1"] == pytest.approx(dyt.blocks[0].norm1.alpha.item())
    assert snap["gamma_std/norm"] == pytest.approx(dyt.norm.weight.std().item())
    assert not any(k.startswith("alpha/") for k in norm_snapshot(ln)) and "gamma_std/norm" in norm_snapshot(ln)
    record = {"epoch": 1}
    track_norms()(dyt, 1, record)
    df = norm_trajectory({"epoch": [1], **{k: [v] for k, v in record.items() if k != "epoch"}}, start=snap)
    assert set(df.epoch) == {0, 1} and set(df.quantity) == {"alpha", "gamma_std", "gamma_mean"}
