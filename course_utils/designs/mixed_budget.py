"""``mixed-budget`` (notebook 03): per-layer weight bit widths for the ViT-DyT whose quantized weights fit in
2.5 bits per weight on average (41.2 kB) and lose at most 1 point of accuracy, with no training.

The student picks the bits of each layer from section 7's sensitivities and greedy assignments; layers left out stay
at 8 bits. Uniform 3 bits does not fit the budget (its size earns nothing: the size target falls to zero at 3 bits
per weight, 49.4 kB) and uniform 2 bits loses about a third of the accuracy, so the bits must go unevenly.

Measured exactly as section 7 does it: symmetric per-channel fake quantization of the weights of every Linear/Conv2d
of the dense baseline (``fake_quantize_model``, ``set_bits``), activations fp32, then the accuracy of fp32 and
quantized on the same half of the test set (a paired difference). The size counts the weights' bits alone
(``weight_sizes``, ``average_bits``): biases and per-channel scales stay fp32 whatever the bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..metrics import accuracy
from ..quantization import average_bits, fake_quantize_model, set_bits, weight_sizes
from .registry import DesignResult, DesignTask, Target, baseline, check_per_layer, register_design, split_data

BUDGET_BITS, MAX_DROP = 2.5, 1.0  # average bits per weight (parameter-weighted); accuracy points
ZERO_BITS = 3.0  # the size earns nothing from here on: uniform 3 bits, the answer the budget is there to rule out
MIN_BITS, MAX_BITS = 2, 8  # the widths a layer may take; a layer left out keeps MAX_BITS


@lru_cache(maxsize=1)
def _sizes() -> dict[str, int]:
    """The number of weights of every quantizable layer (Linear, Conv2d) of the course's ViT, by name."""
    from ..models import build_model

    return weight_sizes(build_model("vit", "dyt"))


def layer_names() -> list[str]:
    """The layers a configuration may name: the quantizable layers (Linear, Conv2d) of the course's ViT."""
    return list(_sizes())


def size_kb(assignment: Mapping[str, float], sizes: Mapping[str, int]) -> float:
    """Kilobytes (1 kB = 1,024 bytes) of the weights of the layers in ``sizes`` at the assignment's bits (8 for a
    layer it leaves out): the parameter-weighted average bits times the number of weights, over 8 bits a byte."""
    full = {n: assignment.get(n, MAX_BITS) for n in sizes}
    return average_bits(full, sizes) * sum(sizes.values()) / 8 / 1024


def budget_kb() -> float:
    """The size budget: :data:`BUDGET_BITS` bits for every weight of the ViT's quantizable layers, to 0.1 kB."""
    return round(size_kb(dict.fromkeys(_sizes(), BUDGET_BITS), _sizes()), 1)


def check(config: Any) -> dict[str, int]:
    """``{layer name: bits, an int from 2 to 8}``; ValueError naming the first problem."""
    return check_per_layer(config, layer_names(), "quantizable", "bits",
                           lambda v: isinstance(v, int) and MIN_BITS <= v <= MAX_BITS,
                           f"bits must be whole numbers from {MIN_BITS} to {MAX_BITS}")


def measure(bits: dict[str, int], smoke: bool, split: str) -> DesignResult:
    dense, data = baseline(smoke)
    qmodel = set_bits(fake_quantize_model(dense, MAX_BITS), bits, None)  # a copy; activations stay fp32
    sizes = weight_sizes(qmodel)
    kb = size_kb(bits, sizes)
    xy = split_data(data, split)
    drop = 100.0 * (accuracy(dense, xy) - accuracy(qmodel, xy))
    zero = size_kb(dict.fromkeys(sizes, ZERO_BITS), sizes)  # uniform 3 bits: no point for the size
    return DesignResult((Target("quantized weights", kb, budget_kb(), zero, " kB"),
                         Target(f"accuracy lost on the {split} half", drop, MAX_DROP, MAX_DROP + 4.0, " pt")),
                        {"size_kb": kb, "average_bits": average_bits({n: bits.get(n, MAX_BITS) for n in sizes}, sizes),
                         "drop_points": drop, "images": float(len(xy[1]))})


MIXED_BUDGET = register_design(DesignTask(
    "mixed-budget", "my_bits",
    "per-layer weight bits: the ViT-DyT's quantized weights in 2.5 bits per weight on average (41.2 kB), at most "
    "1 point lost, no training",
    check, measure))
