"""The deployment benchmark: the ViT-DyT baseline on every runtime and precision, timed side by side.

All runners go into one ``metrics.benchmark`` call (interleaved rounds, medians, speedups paired within a round),
because batch-1 latency on a shared 2-core machine is bimodal: only many short interleaved rounds give a stable
median. The result is one flat dict (printed as one JSON line by ``python -m course_utils.deploy --bench``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from .. import parallel
from ..metrics import benchmark, size_on_disk
from .api import TARGETS, deploy_many
from .executorch_xnnpack import executorch_threads, xnnpack_partitions
from .parity import Tolerance
from .runners import Runner

#: The bars the best int8 deployment should meet (speedups vs eager fp32, size vs the fp32 state dict).
BARS = {"speedup_b1": 4.0, "speedup_b64": 3.0, "size_ratio": 0.70, "accuracy_drop_points": 0.5,
        "executorch_int8_b64": 2.0}
BATCH_SIZES = (1, 64)
#: Parity on the test set: int8 may lose at most 2 points and must agree on 95% of the digits. A smoke baseline
#: (1 epoch) has nearly tied logits, so there int8 only has to point the same way.
INT8_TOLERANCE = Tolerance(min_cosine=0.99, min_agreement=0.95, max_accuracy_drop=0.02)
SMOKE_INT8_TOLERANCE = Tolerance(min_cosine=0.95, min_agreement=0.5)


def _best_int8(speed: dict[str, float], names: list[str]) -> str:
    """The int8 runner closest to meeting both speed bars (largest ``min(b1 / 4, b64 / 3)``)."""
    return max(names, key=lambda n: min(speed[f"{n}_b1"] / BARS["speedup_b1"],
                                        speed[f"{n}_b64"] / BARS["speedup_b64"]))


def run_bench(smoke: bool = False, rounds: int | None = None, min_run_time: float | None = None,
              workdir: Path | None = None, seed: int = 0, threads: int | None = None,
              compile_backend: str = "inductor", workers: int = 0, reuse: bool = False) -> dict[str, Any]:
    """Deploy the ViT-DyT baseline to every target, check each on the test set, time all in one call.

    The exports run ``workers`` at a time (``deploy_many``; 0 = one per core) and, unless ``reuse``, from scratch, so
    ``seconds_build`` is the real cost of exporting; the timing itself runs alone, after the workers have stopped.

    Every runtime gets the same ``threads`` (default: torch's current count): PyTorch's intra-op pool, ONNX Runtime
    and OpenVINO sessions, and ExecuTorch's XNNPACK threadpool. Returns flat keys: ``<runtime>_<precision>_b<bs>``
    speedups vs eager fp32, ``size_<name>`` (size on disk / fp32 state dict), ``acc_delta_<name>`` (accuracy points
    vs eager fp32), ``ms_<name>_b<bs>``, XNNPACK partitions before/after the attention rewrite, the best int8
    deployment and which bars it meets.
    """
    from ..baselines import get_baseline
    from ..data import get_data, stack_loader

    started = time.time()
    before = torch.get_num_threads()
    threads = threads or before
    torch.set_num_threads(threads)
    executorch_threads(threads)
    try:
        bundle = get_data("mnist_5k", batch_size=64, smoke=smoke, seed=seed)
        model, _ = get_baseline("vit", "dyt", dataset="mnist_5k", smoke=smoke, seed=seed, progress=False)
        model = model.cpu().eval()
        calibration, _ = stack_loader(bundle.train_loader, 256)
        x_test, y_test = stack_loader(bundle.test_loader)
        shape = tuple(bundle.info.input_shape)
        test_set = [(x_test, y_test)]  # parity and accuracy on the labelled test set (raises on a real mismatch)
        int8_tolerance = SMOKE_INT8_TOLERANCE if smoke else INT8_TOLERANCE
        sdpa = parallel.submit([parallel.call(xnnpack_partitions, model, shape, attention="sdpa")],
                               workers=workers, progress=False)
        jobs = [dict(model=model, runtime=runtime, precision=precision, calibration=calibration, example_shape=shape,
                     batch_sizes=BATCH_SIZES, workdir=workdir, verify=test_set, threads=threads, reuse=reuse,
                     tolerance=int8_tolerance if precision != "fp32" else None, compile_backend=compile_backend)
                for runtime, precision in TARGETS]
        runners: dict[str, Runner] = {r.name: r for r in deploy_many(jobs, workers=workers, progress=False)}
        sdpa = sdpa.result()[0]
        parallel.shutdown()  # nothing else runs while the runners are timed
        built = time.time() - started
        rounds = rounds or (3 if smoke else 21)
        min_run_time = min_run_time or (0.02 if smoke else 0.1)
        inputs = {bs: x_test[:bs].contiguous() for bs in BATCH_SIZES}
        table = benchmark(runners, inputs=inputs, rounds=rounds, min_run_time=min_run_time,
                          baseline="pytorch_fp32", num_threads=threads)
    finally:
        torch.set_num_threads(before)

    fp32_bytes = size_on_disk(model)
    out: dict[str, Any] = {"bench": "deploy", "model": "vit-small-dyt", "smoke": smoke, "rounds": rounds,
                           "threads": threads, "load_avg_1min": round(os.getloadavg()[0], 2),
                           "fp32_state_dict_kb": round(fp32_bytes / 1024, 1),
                           "fp32_accuracy": round(runners["pytorch_fp32"].parity.accuracy, 4)}
    for name in runners:
        for bs in BATCH_SIZES:
            out[f"{name}_b{bs}"] = round(float(table.loc[name, f"speedup_b{bs}"]), 2)
    for name, r in runners.items():
        out[f"size_{name}"] = round(r.size_bytes / fp32_bytes, 3)
        out[f"acc_delta_{name}"] = round(-100 * r.parity.accuracy_drop, 2) + 0.0
    for name in runners:
        for bs in BATCH_SIZES:
            out[f"ms_{name}_b{bs}"] = round(float(table.loc[name, f"ms_b{bs}"]), 3)
    out["partitions_sdpa"] = sdpa["partitions"]
    out["partitions_bmm"] = runners["executorch_fp32"].info["partitions"]
    out["partitions_bmm_int8"] = runners["executorch_int8"].info["partitions"]

    int8 = [n for n, r in runners.items() if r.precision.startswith("int8") and r.runtime != "pytorch"]
    best = _best_int8(out, int8)
    out["best_int8"] = best
    out["bar_b1_4x"] = out[f"{best}_b1"] >= BARS["speedup_b1"]
    out["bar_b64_3x"] = out[f"{best}_b64"] >= BARS["speedup_b64"]
    out["bar_size_0.70"] = out[f"size_{best}"] <= BARS["size_ratio"]
    out["bar_acc_0.5pt"] = -out[f"acc_delta_{best}"] <= BARS["accuracy_drop_points"]
    out["bar_executorch_int8_b64_2x"] = out["executorch_int8_b64"] >= BARS["executorch_int8_b64"]
    out["seconds_build"] = round(built, 1)
    out["seconds_total"] = round(time.time() - started, 1)
    return out
