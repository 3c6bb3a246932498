"""Measurement: parameters (zeros vs non-zeros), size on disk, FLOPs, CPU latency, accuracy, output similarity."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # benchmark imports it; no CUDA noise
from torch.utils import benchmark  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count  # noqa: E402

from .train import evaluate  # noqa: E402

aten = torch.ops.aten


def effective_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as the model uses it: for pruned modules the masked ``weight``, not ``weight_orig``."""
    out: dict[str, torch.Tensor] = {}
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname.endswith("_orig") and hasattr(module, pname[:-5]):
                pname, p = pname[:-5], getattr(module, pname[:-5])
            out[f"{mname}.{pname}" if mname else pname] = p
    return out


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total, non-zero and zero parameter counts (pruning masks taken into account)."""
    total = nonzero = 0
    for p in effective_parameters(model).values():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()).item())
    return {"total": total, "nonzero": nonzero, "zero": total - nonzero}


def size_on_disk(model: nn.Module | dict[str, Any]) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (quantized packed weights included)."""
    buf = io.BytesIO()
    torch.save(model.state_dict() if isinstance(model, nn.Module) else model, buf)
    return buf.getbuffer().nbytes


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: FLOP formulas FlopCounterMode lacks on CPU (fused attention kernels).
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


def measure_latency(model: nn.Module, example: torch.Tensor, min_run_time: float = 0.5,
                    num_threads: int | None = None) -> float:
    """Median CPU latency in milliseconds of ``model(example)`` with ``torch.utils.benchmark``."""
    model.eval()
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": example},
                            num_threads=num_threads or torch.get_num_threads())
    with torch.no_grad():  # a context, not set_grad_enabled: training afterwards still gets gradients
        model(example)  # warm-up outside the timed region
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


@torch.no_grad()
def predictions(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu") -> torch.Tensor:
    """Concatenated logits (as float32 on the CPU) of ``model`` over ``loader``."""
    model.eval()
    return torch.cat([model(x.to(device)).float().cpu() for x, _ in loader])


def accuracy(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of ``model`` on ``loader``."""
    return evaluate(model, loader, device)["accuracy"]


def output_cosine_similarity(a: nn.Module | torch.Tensor, b: nn.Module | torch.Tensor,
                             loader: DataLoader | None = None) -> float:
    """Mean per-example cosine similarity of two models' logits on ``loader`` (or of two logit tensors)."""
    la = a if isinstance(a, torch.Tensor) else predictions(a, loader)
    lb = b if isinstance(b, torch.Tensor) else predictions(b, loader)
    return F.cosine_similarity(la.float(), lb.float(), dim=1).mean().item()


def model_report(model: nn.Module, loader: DataLoader, example_shape: tuple[int, ...],
                 batch_sizes: tuple[int, ...] = (1, 64), flops: bool = True,
                 min_run_time: float = 0.3) -> dict[str, float]:
    """One table row: accuracy, parameters, size on disk, FLOPs per example and latency at each batch size."""
    row: dict[str, float] = {"accuracy": accuracy(model, loader)}
    counts = count_parameters(model)
    row.update(params=counts["total"], nonzero_params=counts["nonzero"], size_kb=size_on_disk(model) / 1024)
    if flops:
        row["mflops"] = count_flops(model, torch.zeros(1, *example_shape)) / 1e6
    for bs in batch_sizes:
        row[f"latency_ms_b{bs}"] = measure_latency(model, torch.randn(bs, *example_shape), min_run_time)
    return row
