"""Looking inside a PT2E int8 graph: where the quantizer put quantize/dequantize nodes, and DyT's static bound.

A converted PT2E model is an ``fx`` graph in which every int8 tensor is visible as a ``quantize_per_tensor`` node
(fp32 -> uint8 with a scale and zero point) followed by ``dequantize_per_tensor`` nodes. Each node remembers the
module it came from (``meta["nn_module_stack"]``), so the placement can be read per op and per normalization.

DyT's output ``weight * tanh(alpha * x) + bias`` lies in ``[bias - |weight|, bias + |weight|]`` per channel, for
every input. :func:`set_bound_qparams` sets the quantization parameters of DyT's output from that bound, with no
calibration; LayerNorm's output has no such bound (it grows with ``weight`` times the normalized outlier).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..modules import graph_owner

_Q = "quantize_per_tensor"
_DQ = "dequantize_per"  # per tensor or per channel (weights)
_SKIP_OPS = ("sym_size", "getitem")


def _is(node: Any, name: str) -> bool:
    return node.op == "call_function" and name in str(node.target)


def qdq_placement(graph_module: nn.Module) -> pd.DataFrame:
    """One row per compute op of a converted PT2E graph: its op, the module and module type it came from, whether
    an input arrives through a dequantize (``int8_in``) and whether its output goes to a quantize (``int8_out``)."""
    rows = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or _is(node, _Q) or _is(node, _DQ) or any(_is(node, s) for s in _SKIP_OPS):
            continue
        module, kind = graph_owner(node)
        rows.append({"op": str(node.target).split(".")[1] if "." in str(node.target) else str(node.target),
                     "module": module, "module_type": kind,
                     "int8_in": any(_is(a, _DQ) for a in node.all_input_nodes),
                     "int8_out": any(_is(u, _Q) for u in node.users)})
    return pd.DataFrame(rows, columns=["op", "module", "module_type", "int8_in", "int8_out"])


def placement_summary(graph_module: nn.Module, module_types: tuple[str, ...]) -> pd.DataFrame:
    """``qdq_placement`` counted per (module type, op) for the given module types: how many calls, and how many
    of them take int8 inputs / feed a quantize."""
    p = qdq_placement(graph_module)
    p = p[p.module_type.isin(module_types)]
    return p.groupby(["module_type", "op"]).agg(calls=("op", "size"), int8_in=("int8_in", "sum"),
                                               int8_out=("int8_out", "sum"))


def _quantize_after(graph_module: nn.Module, owner_type: str) -> list[tuple[Any, str]]:
    """The quantize nodes fed directly by an op of a module of type ``owner_type``, with that module's name."""
    out = []
    for node in graph_module.graph.nodes:
        if _is(node, _Q) and node.args and isinstance(node.args[0], torch.fx.Node):
            module, kind = graph_owner(node.args[0])
            if kind == owner_type:
                out.append((node, module))
    return out


def dyt_bound(module: nn.Module) -> tuple[float, float]:
    """The range DyT's output can take, for any input: ``[min(bias - |weight|), max(bias + |weight|)]``."""
    w, b = module.weight.detach().float(), module.bias.detach().float()
    return float((b - w.abs()).min()), float((b + w.abs()).max())


def bound_qparams(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int]:
    """Asymmetric scale and zero point for the range ``[lo, hi]`` widened to contain 0 (as an observer would)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (qmax - qmin), 2 ** -12)
    zero_point = int(min(max(qmin - round(lo / scale), qmin), qmax))
    return scale, zero_point


@torch.no_grad()
def set_bound_qparams(graph_module: nn.Module, model: nn.Module, owner_type: str = "DynamicTanh",
                      bound: Callable[[nn.Module], tuple[float, float]] = dyt_bound) -> pd.DataFrame:
    """In place: give every quantize node that DyT's output feeds (and its dequantize users) the scale and zero
    point of ``bound`` (:func:`dyt_bound`, or a student's version of it) instead of the calibrated ones. ``model``
    is the float model the graph was exported from (its DyT weights). Returns one row per replaced node: calibrated
    and bound ranges."""
    modules = dict(model.named_modules())
    rows = []
    for q, name in _quantize_after(graph_module, owner_type):
        if name not in modules:
            raise ValueError(f"the graph's {owner_type} {name!r} is not a module of the model given")
        _, old_scale, old_zp, qmin, qmax = q.args[:5]
        lo, hi = bound(modules[name])
        scale, zp = bound_qparams(float(lo), float(hi), int(qmin), int(qmax))
        for node in (q, *[u for u in q.users if _is(u, _DQ)]):
            node.args = (node.args[0], scale, zp, *node.args[3:])
        rows.append({"module": name, "calibrated_lo": (qmin - old_zp) * old_scale,
                     "calibrated_hi": (qmax - old_zp) * old_scale, "bound_lo": (qmin - zp) * scale,
                     "bound_hi": (qmax - zp) * scale, "scale_ratio": scale / old_scale})
    if not rows:
        raise ValueError(f"no quantize node follows a {owner_type} module in this graph")
    graph_module.recompile()
    return pd.DataFrame(rows).set_index("module")
