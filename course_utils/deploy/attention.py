"""Attention written for edge runtimes: three 3-D ``bmm``-style steps and a softmax, the same math as SDPA.

``torch.export`` turns ``F.scaled_dot_product_attention`` into a fused op (or a 4-D decomposition with masks and
``any``/``where`` guards) that XNNPACK cannot take: the graph splits into ~10 partitions with the CPU running the
rest, and batch-64 latency ends up worse than eager PyTorch. Written as ``bmm(q, k^T) -> softmax -> bmm(., v)`` on
``(batch * heads, tokens, head_dim)`` tensors, every step is a kernel XNNPACK (and ONNX/OpenVINO) knows, so the whole
transformer stays in one delegate.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import Attention
from ..modules import clone_model, find_modules, of_type, replace_modules


class BmmAttention(nn.Module):
    """:class:`~course_utils.models.Attention` as ``bmm -> softmax -> bmm`` on 3-D tensors (export-friendly).

    Reuses the original ``q``/``k``/``v``/``proj`` modules whatever they are (narrowed by structured pruning, or
    low-rank ``down``/``up`` pairs). ``head_mask`` is applied only when some head is switched off, so an unmasked
    model exports no extra multiply.
    """

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = attn.q, attn.k, attn.v, attn.proj
        self.num_heads, self.head_dim = int(attn.num_heads), int(attn.head_dim)
        self.scale = self.head_dim ** -0.5
        mask = attn.head_mask.detach().clone().float()
        self.register_buffer("head_mask", mask)
        self.masked = bool((mask != 1).any())

    def _split(self, t: torch.Tensor, b: int, n: int) -> torch.Tensor:
        """``(b, n, h*d) -> (b*h, n, d)``: one matrix per (example, head) for a plain batched matmul."""
        h, d = self.num_heads, self.head_dim
        return t.reshape(b, n, h, d).permute(0, 2, 1, 3).reshape(b * h, n, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, d = self.num_heads, self.head_dim
        q = self._split(self.q(x) * self.scale, b, n)
        k = self._split(self.k(x), b, n)
        v = self._split(self.v(x), b, n)
        att = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
        out = torch.bmm(att, v).reshape(b, h, n, d)
        if self.masked:
            out = out * self.head_mask.view(1, h, 1, 1)
        return self.proj(out.permute(0, 2, 1, 3).reshape(b, n, h * d))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, masked={self.masked}"


def attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The SDPA attention modules of ``model`` by qualified name (what :func:`export_friendly` rewrites)."""
    return find_modules(model, of_type(Attention))


def export_friendly(model: nn.Module, attention: str = "bmm") -> nn.Module:
    """A CPU eval copy of ``model`` ready for export: pruning masks folded in, and with ``attention="bmm"`` every
    :class:`Attention` swapped for :class:`BmmAttention` (``"sdpa"`` keeps them; for before/after comparisons).

    The original model is never changed.
    """
    if attention not in ("bmm", "sdpa"):
        raise ValueError(f"attention={attention!r} is not valid; choose 'bmm' (export-friendly) or 'sdpa' (as is)")
    new = clone_model(model, fold=True).cpu().eval()
    if attention == "bmm":
        new = replace_modules(new, lambda m, fqn: BmmAttention(m), of_type(Attention))
    for p in new.parameters():
        p.requires_grad_(False)
    return new.eval()
