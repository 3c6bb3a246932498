"""Measurement: what a model costs (parameters, bytes, FLOPs, time) and how well it does (accuracy, agreement).

- :mod:`.counts`: parameters (zeros vs non-zeros), size on disk, FLOPs.
- :mod:`.speed`: the one benchmark (interleaved rounds, medians, paired speedups), operator profile, Amdahl.
- :mod:`.agreement`: accuracy, output cosine similarity, CKA, agreement with a teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from .agreement import (
    accuracy,
    compare_to_teacher,
    labels,
    linear_cka,
    logits_and_features,
    output_cosine_similarity,
    predictions,
)
from .counts import count_flops, count_parameters, effective_parameters, size_on_disk
from .speed import MATRIX_OPS, LatencyRatio, amdahl_reading, amdahl_speedup, benchmark, latency_ratio, op_time_breakdown

__all__ = ["LatencyRatio", "accuracy", "amdahl_reading", "amdahl_speedup", "benchmark", "compare_to_teacher",
           "count_flops", "count_parameters", "effective_parameters", "labels", "latency_ratio", "linear_cka",
           "logits_and_features", "MATRIX_OPS", "model_report", "op_time_breakdown", "output_cosine_similarity",
           "predictions", "size_on_disk"]


def model_report(models: dict[str, nn.Module], loader: DataLoader, example_shape: Sequence[int],
                 batch_sizes: Sequence[int] = (1, 64), rounds: int = 3, min_run_time: float = 0.1,
                 flops: bool = True):
    """One row per model: accuracy, parameters, size on disk, FLOPs per example, and latency and speedup at each
    batch size from one :func:`benchmark` call (speedups relative to the first model)."""
    import pandas as pd

    rows = []
    for name, m in models.items():
        counts = count_parameters(m)
        row = {"model": name, "accuracy": accuracy(m, loader), "params": counts["total"],
               "nonzero_params": counts["nonzero"], "size_kb": size_on_disk(m) / 1024}
        if flops:
            row["mflops"] = count_flops(m, torch.zeros(1, *example_shape)) / 1e6
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    speed = benchmark(models, example_shape, batch_sizes, rounds=rounds, min_run_time=min_run_time)
    cols = [c for bs in batch_sizes for c in (f"ms_b{bs}", f"speedup_b{bs}")]
    return table.join(speed[cols])
