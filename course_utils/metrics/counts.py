"""What a model costs: parameters (zeros vs non-zeros), bytes on disk and FLOPs."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..modules import effective_weight, graph_constant, is_pruned

aten = torch.ops.aten


def effective_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as the model computes with it: a pruned weight is ``weight_orig * weight_mask``."""
    out: dict[str, torch.Tensor] = {}
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname.endswith("_orig") and is_pruned(module, pname[:-5]):
                pname, p = pname[:-5], effective_weight(module, pname[:-5])
            out[f"{mname}.{pname}" if mname else pname] = p.detach()
    return out


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total, non-zero and zero parameter counts (pruning masks taken into account, never stale)."""
    total = nonzero = 0
    for p in effective_parameters(model).values():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p).item())
    return {"total": total, "nonzero": nonzero, "zero": total - nonzero}


def size_on_disk(model: nn.Module | dict[str, Any]) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (quantized weights included). For an ``fx`` graph module (a PT2E
    int8 model) only the tensors its graph reads are saved: ``torch.export`` keeps the fp32 parameters beside the
    int8 constants that replaced them, and they are not part of the model that runs."""
    if isinstance(model, torch.fx.GraphModule):
        model = {str(n.target): graph_constant(model, n) for n in model.graph.nodes if n.op == "get_attr"}
        model = {k: v for k, v in model.items() if isinstance(v, torch.Tensor)}
    buf = io.BytesIO()
    torch.save(model.state_dict() if isinstance(model, nn.Module) else model, buf)
    return buf.getbuffer().nbytes


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: FLOP formulas FlopCounterMode lacks on CPU (the fused attention kernel has none in torch 2.13/2.14).
EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {}
if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
    EXTRA_FLOP_FORMULAS[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """Forward-pass FLOPs (2 x multiply-accumulates) for ``example``, CPU attention included."""
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    with torch.no_grad(), counter:
        model(example)
    return counter.get_total_flops()
