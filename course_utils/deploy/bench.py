"""The deployment benchmark: the ViT-DyT baseline on every runtime and precision, timed side by side.

All runners go into one ``metrics.benchmark`` call (interleaved rounds, medians, speedups paired within a round),
because batch-1 latency on a shared 2-core machine is bimodal: only many short interleaved rounds give a stable
median. The result is one flat dict (printed as one JSON line by ``python -m course_utils.deploy --bench``).

The ratios are properties of the machine as much as of the runtimes (see :mod:`.machine`): the line therefore
records the CPU model and instruction sets, the threads every runner used (read back from its runtime), OpenVINO's
precision and performance hint, the load average before and after, and the share of the CPU other processes and
the hypervisor took while timing; the bars name the CPU they were met (or missed) on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import parallel
from ..args import check_int, check_number
from ..baselines import get_baseline
from ..data import get_data, stack_loader, stratified_sample
from ..metrics import benchmark, size_on_disk
from ..storage import ensure_writable_dir
from ..zoo import calibration_images
from .api import TARGETS, deploy_many
from .common import default_workdir
from .machine import (
    CpuUse,
    bench_threads,
    describe_machine,
    load_average,
    machine_info,
    quiet_machine,
    runtime_settings,
)
from .parity import Tolerance
from .runners import Runner
from .runtimes.executorch_xnnpack import executorch_threads, xnnpack_partitions

#: The bars the best int8 deployment should meet (speedups vs eager fp32, size vs the fp32 state dict).
BARS = {"speedup_b1": 4.0, "speedup_b64": 3.0, "size_ratio": 0.70, "accuracy_drop_points": 0.5,
        "executorch_int8_b64": 2.0}
BATCH_SIZES = (1, 64)
#: Calibration images of every int8 target: notebook 06 uses the same number, so both calibrate on the same images.
CALIBRATION = 256
#: Parity on the test set: int8 may lose at most 2 points and must agree on 95% of the digits. A smoke baseline
#: (1 epoch) has nearly tied logits, so there int8 only has to point the same way.
INT8_TOLERANCE = Tolerance(min_cosine=0.99, min_agreement=0.95, max_accuracy_drop=0.02)
SMOKE_INT8_TOLERANCE = Tolerance(min_cosine=0.95, min_agreement=0.5)


def _best_int8(speed: dict[str, float], names: list[str]) -> str:
    """The int8 runner closest to meeting both speed bars (largest ``min(b1 / 4, b64 / 3)``)."""
    return max(names, key=lambda n: min(speed[f"{n}_b1"] / BARS["speedup_b1"],
                                        speed[f"{n}_b64"] / BARS["speedup_b64"]))


def threads_mismatch(settings: dict[str, Any], threads: int) -> list[str]:
    """The runners whose read-back thread count (``threads_<name>`` in ``settings``) is not ``threads``."""
    return sorted(k[len("threads_"):] for k, v in settings.items()
                  if k.startswith("threads_") and not k.endswith("_at_compile") and v != threads)


def ratio_noise(table: Any, names: list[str], batch_sizes: tuple[int, ...]) -> dict[str, float]:
    """``noise_<name>_b<bs>``: the inter-quartile range of the per-round speedups over their median (0.1 = the
    middle half of the rounds spans 10% of the ratio). Two runs that differ by much more than this differ for a
    reason (the machine, the load), not by chance."""
    times, base = table.attrs["times"], table.attrs["baseline"]
    out = {}
    for name in names:
        for bs in batch_sizes:
            ratio = np.asarray(times[f"{base}|{bs}"]) / np.asarray(times[f"{name}|{bs}"])
            q1, med, q3 = np.percentile(ratio, [25, 50, 75])
            out[f"noise_{name}_b{bs}"] = round(float((q3 - q1) / med), 3) if med > 0 else float("nan")
    return out


def check_bench_arguments(rounds: int | None = None, min_run_time: float | None = None,
                          workdir: os.PathLike | str | None = None, seed: int = 0, threads: int | None = None,
                          workers: int = 0) -> Path:
    """``ValueError`` naming the first bad argument of :func:`run_bench`, ``OutputPathError`` for an artifact folder
    that cannot be written; returns that folder. Called before any training (a negative ``min_run_time`` used to
    fail after 175 s of it, an unwritable ``workdir`` after 31 s)."""
    if rounds is not None:
        check_int("rounds", rounds, 1)
    if min_run_time is not None:
        check_number("min_run_time", min_run_time, 0.0, 3600.0, low_open=True)
    check_int("seed", seed, 0)
    if threads is not None:
        check_int("threads", threads, 1)
    check_int("workers", workers, 0)
    return ensure_writable_dir(default_workdir() if workdir is None else workdir, "artifact folder (workdir)")


def run_bench(smoke: bool = False, rounds: int | None = None, min_run_time: float | None = None,
              workdir: Path | None = None, seed: int = 0, threads: int | None = None,
              compile_backend: str = "inductor", workers: int = 0, reuse: bool = False) -> dict[str, Any]:
    """Deploy the ViT-DyT baseline to every target, check each on the test set, time all in one call.

    The exports run ``workers`` at a time (``deploy_many``; 0 = one per core) and, unless ``reuse``, from scratch, so
    ``seconds_build`` is the real cost of exporting; the timing itself runs alone, after the workers have stopped.

    Every runtime gets the same ``threads`` (default :func:`~.machine.bench_threads`: the cores this process may
    use): PyTorch's intra-op pool (the eager baseline included), ONNX Runtime's intra-op threads, OpenVINO's
    ``INFERENCE_NUM_THREADS`` (with ``INFERENCE_PRECISION_HINT=f32`` and ``PERFORMANCE_HINT=LATENCY``) and
    ExecuTorch's XNNPACK threadpool. Returns flat keys: the machine (:func:`~.machine.machine_info`), ``threads_<name>``
    and OpenVINO's ``<name>_precision``/``_hint``/``_streams``/``_isa`` as each runtime reports them,
    ``threads_mismatch`` (runners that did not get ``threads``), ``load_avg_start``/``_before_timing``/``_after``
    (1, 5, 15 min), ``cpu_others_share``/``cpu_steal_share`` while timing and ``quiet_machine``;
    ``<runtime>_<precision>_b<bs>`` speedups vs eager fp32, ``size_<name>`` (size on disk / fp32 state dict),
    ``acc_delta_<name>`` (accuracy points vs eager fp32), ``ms_<name>_b<bs>``, XNNPACK partitions before/after the
    attention rewrite, the best int8 deployment, which bars it meets and ``bars_measured_on`` (the CPU).
    Every argument and the artifact folder are checked first: a bad one fails before minutes of training.
    """
    check_bench_arguments(rounds, min_run_time, workdir, seed, threads, workers)
    started = time.time()
    load_start = load_average()  # other processes, before this one adds its own exports
    machine = machine_info()
    before = torch.get_num_threads()
    threads = threads or bench_threads()
    torch.set_num_threads(threads)
    executorch_threads(threads)
    try:
        bundle = get_data("mnist_5k", batch_size=64, smoke=smoke, seed=seed)
        model, _ = get_baseline("vit", "dyt", dataset="mnist_5k", smoke=smoke, seed=seed, progress=False)
        model = model.cpu().eval()
        calibration = calibration_images(bundle, CALIBRATION)  # the same images as notebook 06's
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
        inputs = {bs: stratified_sample(bundle.test_loader, bs)[0].contiguous() for bs in BATCH_SIZES}
        load_before = load_average()  # includes the decaying load of this process's own exports
        with CpuUse() as use:
            table = benchmark(runners, inputs=inputs, rounds=rounds, min_run_time=min_run_time,
                              baseline="pytorch_fp32", num_threads=threads)
        load_after = load_average()
        settings = runtime_settings(runners)  # read back while torch still has ``threads``
    finally:
        torch.set_num_threads(before)

    fp32_bytes = size_on_disk(model)
    timing = use.result()
    out: dict[str, Any] = {"bench": "deploy", "model": "vit-small-dyt", "smoke": smoke, "rounds": rounds,
                           "min_run_time": min_run_time, **machine, "threads": threads, **settings,
                           "threads_mismatch": threads_mismatch(settings, threads),
                           "load_avg_start": load_start, "load_avg_before_timing": load_before,
                           "load_avg_after": load_after, **timing, "quiet_machine": quiet_machine(timing),
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
    out.update(ratio_noise(table, list(runners), BATCH_SIZES))
    out["partitions_sdpa"] = sdpa["partitions"]
    out["partitions_bmm"] = runners["executorch_fp32"].info["partitions"]
    out["partitions_bmm_int8"] = runners["executorch_int8"].info["partitions"]

    int8 = [n for n, r in runners.items() if r.precision.startswith("int8") and r.runtime != "pytorch"]
    best = _best_int8(out, int8)
    out["best_int8"] = best
    out["bars_measured_on"] = f"{describe_machine(machine)}, {threads} threads"
    out["bar_b1_4x"] = out[f"{best}_b1"] >= BARS["speedup_b1"]
    out["bar_b64_3x"] = out[f"{best}_b64"] >= BARS["speedup_b64"]
    out["bar_size_0.70"] = out[f"size_{best}"] <= BARS["size_ratio"]
    out["bar_acc_0.5pt"] = -out[f"acc_delta_{best}"] <= BARS["accuracy_drop_points"]
    out["bar_executorch_int8_b64_2x"] = out["executorch_int8_b64"] >= BARS["executorch_int8_b64"]
    out["seconds_build"] = round(built, 1)
    out["seconds_total"] = round(time.time() - started, 1)
    return out
