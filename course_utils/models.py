"""Models: Dynamic Tanh, norm conversion, a compact ViT, a small ConvNet, and what their norm layers learned.

DyT follows Zhu, Chen, He, LeCun & Liu, "Transformers without Normalization" (CVPR 2025):
``DyT(x) = weight * tanh(alpha * x) + bias`` with one learnable scalar ``alpha`` per layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .args import check_choice
from .modules import effective_weight, of_type, replace_modules
from .norms import make_norm, norm_layer_types, norms_for
from .norms.dyt import DynamicTanh

MODEL_NAMES = ("vit", "cnn")

#: ViT size presets (embedding dim, depth, heads, MLP ratio); teachers and students use these.
VIT_PRESETS: dict[str, dict[str, int]] = {
    "nano": dict(dim=32, depth=2, heads=2, mlp_ratio=2),
    "tiny": dict(dim=48, depth=3, heads=3, mlp_ratio=2),
    "small": dict(dim=64, depth=4, heads=4, mlp_ratio=2),
    "base": dict(dim=96, depth=6, heads=6, mlp_ratio=2),
    "large": dict(dim=128, depth=8, heads=8, mlp_ratio=2),
}
#: ConvNet channel widths per preset.
CNN_PRESETS: dict[str, tuple[int, ...]] = {
    "tiny": (16, 32, 64),
    "small": (32, 64, 128),
    "base": (64, 128, 256),
}


def _check_alpha_init(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"alpha_init={value!r} is not valid; it must be a finite number > 0 (the paper uses 0.5)")


def _check_input(x: torch.Tensor, channels: int, size: int | None = None) -> None:
    """A clear error for images of the wrong shape (instead of a shape mismatch deep inside a layer)."""
    if x.ndim != 4 or x.shape[1] != channels or (size is not None and tuple(x.shape[2:]) != (size, size)):
        want = f"(batch, {channels}, {size}, {size})" if size is not None else f"(batch, {channels}, H, W)"
        raise ValueError(f"input of shape {tuple(x.shape)} does not fit this model; it expects {want}")


def convert_norm_to_dyt(module: nn.Module, convert_batchnorm: bool = False,
                        alpha_init_value: float = 0.5) -> nn.Module:
    """Replace every ``nn.LayerNorm`` (and optionally ``nn.BatchNorm2d``) with DyT of the same shape, in place.

    Works on any module tree, torchvision models included; returns the (possibly new) module.
    """
    types = (nn.LayerNorm, nn.BatchNorm2d) if convert_batchnorm else (nn.LayerNorm,)

    def to_dyt(norm: nn.Module, fqn: str) -> DynamicTanh:
        if isinstance(norm, nn.LayerNorm):
            return DynamicTanh(norm.normalized_shape, channels_last=True, alpha_init_value=alpha_init_value)
        return DynamicTanh(norm.num_features, channels_last=False, alpha_init_value=alpha_init_value)

    return replace_modules(module, to_dyt, of_type(*types))


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections so heads can be pruned one by one.

    ``head_mask`` (a buffer of ones, one entry per head) scales each head's output; setting an entry
    to 0 removes that head functionally. ``num_heads`` and ``head_dim`` describe the current shape.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int | None = None) -> None:
        super().__init__()
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
            head_dim = dim // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.proj = nn.Linear(inner, dim)
        self.register_buffer("head_mask", torch.ones(num_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, d = self.num_heads, self.head_dim

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, h, d).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        out = out * self.head_mask.view(1, h, 1, 1)
        return self.proj(out.transpose(1, 2).reshape(b, n, h * d))


class Mlp(nn.Module):
    """Feed-forward block: ``fc1 -> GELU -> fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, norm: str, alpha_init: float = 0.5) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim, alpha_init=alpha_init)
        self.attn = Attention(dim, heads)
        self.norm2 = make_norm(norm, dim, alpha_init=alpha_init)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Compact Vision Transformer for small images (28x28 MNIST, 32x32 CIFAR, 8x8 digits).

    Module names are stable: ``patch_embed``, ``blocks.{i}.norm1|attn.{q,k,v,proj}|norm2|mlp.{fc1,fc2}``,
    ``norm`` and ``head``. The default patch size cuts the image into a 4x4 grid of patches.
    """

    def __init__(self, img_size: int = 28, in_chans: int = 1, num_classes: int = 10,
                 patch_size: int | None = None, dim: int = 64, depth: int = 4, heads: int = 4,
                 mlp_ratio: int = 2, norm: str = "dyt", alpha_init: float = 0.5) -> None:
        super().__init__()
        check_choice("norm", norm, norms_for("vit"))
        _check_alpha_init(alpha_init)
        patch_size = patch_size or max(1, img_size // 4)
        if img_size % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide img_size={img_size}")
        self.norm_type = norm
        self.img_size, self.in_chans = img_size, in_chans
        self.patch_size = patch_size
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, norm, alpha_init) for _ in range(depth))
        self.norm = make_norm(norm, dim, alpha_init=alpha_init)
        self.head = nn.Linear(dim, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Xavier-uniform, not timm's trunc_normal(std=0.02): at width 64, 0.02 makes q and k so small that the
        # attention scores and their gradients start near zero, and the ViT needed twice the epochs to reach the
        # same accuracy on MNIST (measured: DyT 68% vs 90% after 12 epochs).
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the normalized CLS embedding (the input of ``head``)."""
        _check_input(x, self.in_chans, self.img_size)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvNet(nn.Module):
    """Small CNN: stages of ``conv3x3 -> norm -> ReLU -> maxpool``, global average pool, ``head``.

    Module names: ``blocks.{i}.conv``, ``blocks.{i}.norm``, ``blocks.{i}.act``, ``blocks.{i}.pool``, ``head``.
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 10, widths: Sequence[int] = (32, 64, 128),
                 norm: str = "batchnorm", alpha_init: float = 0.5) -> None:
        super().__init__()
        check_choice("norm", norm, norms_for("cnn"))
        _check_alpha_init(alpha_init)
        self.norm_type = norm
        self.in_chans = in_chans
        blocks = []
        prev = in_chans
        for w in widths:
            blocks.append(nn.Sequential(OrderedDict(
                conv=nn.Conv2d(prev, w, 3, padding=1, bias=norm != "batchnorm"),
                norm=make_norm(norm, w, channels_last=False, alpha_init=alpha_init),
                act=nn.ReLU(),
                pool=nn.MaxPool2d(2, ceil_mode=True),
            )))
            prev = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(prev, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled feature vector (the input of ``head``)."""
        _check_input(x, self.in_chans)
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(name: str = "vit", norm: str = "dyt", num_classes: int = 10,
                input_shape: Sequence[int] = (1, 28, 28), size: str = "small", alpha_init: float = 0.5) -> nn.Module:
    """Build ``"vit"`` or ``"cnn"`` with the given norm, class count, ``(C, H, W)`` input, size preset and, for
    DyT, initial alpha."""
    check_choice("name", name, MODEL_NAMES)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not valid; it must be an integer >= 2")
    if len(tuple(input_shape)) != 3 or any(int(v) < 1 for v in input_shape):
        raise ValueError(f"input_shape={tuple(input_shape)} is not valid; give (channels, height, width)")
    c, h, w = (int(v) for v in input_shape)
    if h != w:
        raise ValueError(f"input_shape={tuple(input_shape)} must be square")
    if name == "vit":
        check_choice("norm", norm, norms_for("vit"))
        check_choice("size", size, list(VIT_PRESETS))
        return ViT(img_size=h, in_chans=c, num_classes=num_classes, norm=norm, alpha_init=alpha_init,
                   **VIT_PRESETS[size])
    check_choice("norm", norm, norms_for("cnn"))
    check_choice("size", size, list(CNN_PRESETS))
    return ConvNet(in_chans=c, num_classes=num_classes, widths=CNN_PRESETS[size], norm=norm, alpha_init=alpha_init)


def dyt_layers(model: nn.Module) -> dict[str, DynamicTanh]:
    """All DyT layers of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, DynamicTanh)}


def norm_parameters(model: nn.Module) -> dict[str, dict[str, float]]:
    """Summary of every norm layer's affine parameters: alpha (DyT, Derf), mean/std of weight (gamma) and bias."""
    out: dict[str, dict[str, float]] = {}
    for name, m in model.named_modules():
        if isinstance(m, norm_layer_types()) and getattr(m, "weight", None) is not None:
            gamma = effective_weight(m)
            row = {"gamma_mean": gamma.mean().item(), "gamma_std": gamma.std().item()}
            if isinstance(getattr(m, "bias", None), torch.Tensor) or hasattr(m, "bias_orig"):  # RMSNorm has none
                row["beta_mean"] = effective_weight(m, "bias").mean().item()
            if isinstance(getattr(m, "alpha", None), torch.Tensor):  # DyT, Derf: the learned input scale
                row["alpha"] = m.alpha.detach().item()
            out[name] = row
    return out


def norm_snapshot(model: nn.Module) -> dict[str, float]:
    """Flat ``{"alpha/<layer>": ..., "gamma_std/<layer>": ..., "gamma_mean/<layer>": ...}`` for every norm layer."""
    return {f"{key}/{name}": row[key] for name, row in norm_parameters(model).items()
            for key in ("gamma_std", "gamma_mean", "alpha") if key in row}


def track_norms() -> Callable[[nn.Module, int, dict[str, float]], None]:
    """A ``fit(after_epoch=...)`` callback adding :func:`norm_snapshot` to each epoch's record."""
    def after_epoch(model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        record.update(norm_snapshot(model))
    return after_epoch


def norm_trajectory(history: dict[str, list[float]], start: dict[str, float] | None = None) -> pd.DataFrame:
    """Long table (epoch, quantity, layer, value) from a tracked history; ``start`` is the epoch-0 snapshot."""
    rows = []
    if start:
        rows += [{"epoch": 0, "quantity": k.split("/", 1)[0], "layer": k.split("/", 1)[1], "value": v}
                 for k, v in start.items()]
    for k, values in history.items():
        if "/" in k:
            q, layer = k.split("/", 1)
            rows += [{"epoch": e, "quantity": q, "layer": layer, "value": v}
                     for e, v in zip(history["epoch"], values)]
    return pd.DataFrame(rows, columns=["epoch", "quantity", "layer", "value"])


def mean_alpha(model: nn.Module) -> float:
    """Mean learned alpha over the DyT layers (NaN for a model without DyT)."""
    layers = dyt_layers(model)
    return float(sum(m.alpha.item() for m in layers.values()) / len(layers)) if layers else float("nan")
