"""What a model costs in time: the one benchmark of the course, an operator profile and Amdahl's law.

Every latency number in the notebooks comes from :func:`benchmark`. It times all candidates in the same call,
in interleaved rounds, so a burst of background load hits every model of a round instead of one model; a speedup
is the median over rounds of the ratio measured *within* each round. Batch-1 latency on a busy laptop is bimodal:
more rounds, not longer rounds, make the median trustworthy.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # benchmark imports it; no CUDA noise
from torch.utils import benchmark as tbench  # noqa: E402

Candidate = nn.Module | Callable[[torch.Tensor], Any]


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is not valid; it must be an integer >= 1")
    return value


def _callable(candidate: Candidate) -> Callable[[torch.Tensor], Any]:
    if isinstance(candidate, nn.Module):
        candidate.eval()
        return candidate
    if not callable(candidate):
        raise ValueError(f"a benchmark candidate must be an nn.Module or a callable, got {type(candidate).__name__}")
    return candidate


def _time(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, min_run_time: float, threads: int) -> float:
    """Median seconds per call of ``fn(x)`` over blocks of calls (``torch.utils.benchmark.Timer``) that together
    last ``min_run_time``, after one warm-up call.

    The warm-up call also sizes the blocks (about a tenth of ``min_run_time`` each, at least 3 blocks), like
    ``Timer.blocked_autorange`` but without its search over block sizes, which here cost as much time again as the
    measurement itself.
    """
    timer = tbench.Timer(stmt="fn(x)", globals={"fn": fn, "x": x}, num_threads=threads)
    with torch.no_grad():  # a context manager: autograd is back on for whatever runs next
        start = time.perf_counter()
        fn(x)
        first = time.perf_counter() - start
        number = max(1, int(min_run_time / 10 / max(first, 1e-7)))
        blocks: list[float] = []
        while sum(blocks) * number < min_run_time or len(blocks) < 3:
            blocks.append(timer.timeit(number).mean)
        return float(np.median(blocks))


def benchmark(candidates: Mapping[str, Candidate], example_shape: Sequence[int] | None = None,
              batch_sizes: Sequence[int] = (1, 64), *, rounds: int = 5, min_run_time: float = 0.1,
              baseline: str | None = None, inputs: Mapping[int, torch.Tensor] | None = None,
              num_threads: int | None = None) -> pd.DataFrame:
    """CPU latency of every candidate at every batch size, measured side by side.

    ``candidates`` maps names to models or to any callable taking a batch (an ONNX Runtime session wrapper, a
    compiled model). Inputs are random images of ``example_shape`` (C, H, W), or the tensors in ``inputs``
    keyed by batch size. Each of ``rounds`` rounds times every candidate once per batch size for ``min_run_time``
    seconds (the order reverses every other round). Returns one row per candidate with, per batch size:
    ``ms_b{bs}`` (median over rounds), ``spread_b{bs}`` (inter-quartile range over rounds, ms) and
    ``speedup_b{bs}`` (median over rounds of the ``baseline``'s time divided by this candidate's, both from the
    same round; the baseline is the first candidate unless named).
    """
    if not candidates:
        raise ValueError("candidates is empty: give at least one model to time")
    _check_positive_int("rounds", rounds)
    if not min_run_time > 0:
        raise ValueError(f"min_run_time={min_run_time!r} is not valid; it must be > 0 seconds")
    names = list(candidates)
    baseline = names[0] if baseline is None else baseline
    if baseline not in candidates:
        raise ValueError(f"baseline={baseline!r} is not one of the candidates {names}")
    if inputs is None:
        if example_shape is None:
            raise ValueError("give example_shape (C, H, W) or inputs {batch_size: tensor}")
        for bs in batch_sizes:
            _check_positive_int("batch size", bs)
        gen = torch.Generator().manual_seed(0)
        inputs = {bs: torch.randn(bs, *example_shape, generator=gen) for bs in batch_sizes}
    fns = {n: _callable(c) for n, c in candidates.items()}
    threads = num_threads or torch.get_num_threads()
    times = {(n, bs): [] for n in names for bs in inputs}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            for bs, x in inputs.items():
                times[n, bs].append(_time(fns[n], x, min_run_time, threads) * 1e3)
    rows = []
    for n in names:
        row: dict[str, Any] = {"model": n}
        for bs in inputs:
            t = np.array(times[n, bs])
            row[f"ms_b{bs}"] = float(np.median(t))
            row[f"spread_b{bs}"] = float(np.subtract(*np.percentile(t, [75, 25])))
            row[f"speedup_b{bs}"] = float(np.median(np.array(times[baseline, bs]) / t))
        rows.append(row)
    df = pd.DataFrame(rows).set_index("model")
    df.attrs.update(rounds=rounds, min_run_time=min_run_time, threads=threads, baseline=baseline,
                    times={f"{n}|{bs}": v for (n, bs), v in times.items()})
    return df



@dataclass(frozen=True)
class LatencyRatio:
    """``a``'s latency over ``b``'s, round by round from one :func:`benchmark` call: median and inter-quartile range.

    Why per round: the two were timed back to back in each round, so a machine that slows down between rounds
    slows both; a ratio of two medians from two calls carries the noise of both calls (the same model timed
    0.92 ms in one call and 1.60 ms in another here).
    """

    a: str
    b: str
    batch_size: int
    ms_a: float
    ms_b: float
    median: float
    q1: float
    q3: float
    rounds: int

    def verdict(self, labels: tuple[str, str] | None = None, margin: float = 0.05) -> str:
        """"faster"/"slower" only when the middle half of the rounds agrees and the median is over ``margin`` from 1."""
        la, lb = labels or (self.a, self.b)
        what = (f"{la} {self.ms_a:.3f} ms vs {lb} {self.ms_b:.3f} ms at batch {self.batch_size} (ratio "
                f"{self.median:.2f}, rounds' middle half {self.q1:.2f}-{self.q3:.2f})")
        if self.q3 < 1 and self.median < 1 - margin:
            return f"{la} is {1 / self.median:.2f}x faster: {what}"
        if self.q1 > 1 and self.median > 1 + margin:
            return f"{la} is {self.median:.2f}x slower: {what}"
        return f"within noise: {what}"


def latency_ratio(bench: pd.DataFrame, a: str, b: str, batch_size: int) -> LatencyRatio:
    """:class:`LatencyRatio` of candidates ``a`` and ``b`` of one :func:`benchmark` table (its per-round times)."""
    times = bench.attrs.get("times", {})
    for name in (a, b):
        if f"{name}|{batch_size}" not in times:
            raise ValueError(f"{name!r} at batch {batch_size} is not in this benchmark; it timed "
                             f"{sorted(set(k.rsplit('|', 1)[0] for k in times))}")
    ta, tb = np.asarray(times[f"{a}|{batch_size}"]), np.asarray(times[f"{b}|{batch_size}"])
    q1, med, q3 = np.percentile(ta / tb, [25, 50, 75])
    return LatencyRatio(a, b, batch_size, float(np.median(ta)), float(np.median(tb)), float(med), float(q1),
                        float(q3), len(ta))

# ----------------------------------------------------------------------------------------- where time goes

#: Operators whose work structured pruning shrinks: the *kernels* that do the multiply-adds of matrix products,
#: convolutions and attention. On the CPU PyTorch picks a convolution kernel per call: oneDNN
#: (``aten::mkldnn_convolution``) for large inputs, but for small ones (a batch of 1, few channels) it often takes
#: the "slow" im2col + GEMM path, ``aten::thnn_conv2d`` -> ``aten::_slow_conv2d_forward``, whose time must count
#: too. Dispatch wrappers (``aten::conv2d``, ``aten::convolution``, ``aten::_convolution``, ``aten::thnn_conv2d``,
#: ``aten::linear``, ``aten::matmul``) only route the call: their self time is a fixed per-call cost that pruning
#: does not shrink, so they are not matrix ops.
MATRIX_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::_addmm_activation",
              "aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::slow_conv_dilated2d",
              "aten::_nnpack_spatial_convolution", "aten::mkldnn_linear",
              "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math")


@contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence C++ writes to file descriptor 2 (the profiler's start/stop log lines) for the duration."""
    sys.stderr.flush()
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def op_time_breakdown(model: nn.Module, example: torch.Tensor, repeats: int = 3) -> pd.DataFrame:
    """Self CPU time and calls per operator of ``model(example)`` (``torch.profiler``), per forward, largest first.

    ``matrix`` marks the operators in :data:`MATRIX_OPS`; ``share`` is each operator's fraction of the total.
    """
    from torch.profiler import ProfilerActivity, profile

    _check_positive_int("repeats", repeats)
    model.cpu().eval()
    with torch.no_grad():
        model(example)
        with _quiet_fd2(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                model(example)
    rows = [{"op": e.key, "calls": e.count / repeats, "ms": e.self_cpu_time_total / 1e3 / repeats}
            for e in prof.key_averages() if e.self_cpu_time_total > 0]
    df = pd.DataFrame(rows, columns=["op", "calls", "ms"]).sort_values("ms", ascending=False).reset_index(drop=True)
    df["matrix"] = df.op.isin(MATRIX_OPS)
    df["share"] = df.ms / df.ms.sum()
    return df


def amdahl_speedup(matrix_share: float, flop_reduction: float, other_reduction: float = 1.0) -> float:
    """Amdahl's law: the ``matrix_share`` of the time shrinks by ``flop_reduction``, the rest by ``other_reduction``."""
    if not 0 <= matrix_share <= 1 or flop_reduction <= 0 or other_reduction <= 0:
        raise ValueError("matrix_share must be in [0, 1]; flop_reduction and other_reduction must be > 0")
    return 1.0 / (matrix_share / flop_reduction + (1.0 - matrix_share) / other_reduction)


def amdahl_reading(measured: float, predicted: float, tolerance: float = 0.1) -> str:
    """How a measured speedup reads against Amdahl's prediction: beyond ``tolerance`` (relative) either way the
    law's assumptions failed, which the caller explains with what the profiler saw."""
    if measured <= 0 or predicted <= 0:
        raise ValueError(f"measured={measured!r} and predicted={predicted!r} must be speedups > 0")
    ratio = measured / predicted
    if ratio > 1 + tolerance:
        return "The measurement beats the prediction"
    if ratio < 1 - tolerance:
        return "The measurement falls short of the prediction"
    return f"The prediction holds within {tolerance:.0%}"
