"""What a latency ratio depends on: the CPU and its instruction sets, the threads each runtime used, the load.

A speedup against eager PyTorch is a ratio of two programs' times on one machine, and the two programs use the
hardware differently: int8 kernels of OpenVINO (oneDNN), XNNPACK and ONNX Runtime (MLAS) take the fastest path the
CPU offers (AMX, AVX-512 VNNI, AVX-VNNI, else plain AVX2/AVX-512), eager PyTorch's fp32 path takes another; a
batch-64 forward is compute-bound and scales with the threads it gets, a batch-1 forward is dispatch-bound and
barely does; and a second process on a 2-core machine slows OpenMP's statically split loops (eager PyTorch) more
than the work-stealing pools of the runtimes. So the benchmark records all of it (:func:`machine_info`,
:func:`runtime_settings`, :class:`CpuUse`) next to every ratio, and every runtime gets the same thread count,
:func:`bench_threads`: the cores this process may use.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..base import cpu_count

#: Instruction-set flags the runtimes' kernels choose between (x86 names from ``/proc/cpuinfo``'s ``flags``, Arm
#: names from its ``Features``), fastest int8 path last within each family.
RELEVANT_FLAGS = ("sse4_2", "avx", "fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512vl", "avx_vnni",
                  "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
                  "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")
#: The int8 dot-product paths, best first: what decides how much int8 gains over fp32 on a CPU.
INT8_PATHS = (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
              ("i8mm", "Arm I8MM"), ("asimddp", "Arm dot product"), ("avx512bw", "AVX-512 (no VNNI)"),
              ("avx2", "AVX2 (no VNNI)"))
#: Above this share of the CPU used by other processes (or stolen by the hypervisor) while timing, the ratios are
#: not those of a quiet machine.
BUSY_SHARE = 0.10


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model name and the :data:`RELEVANT_FLAGS` present, from the text of ``/proc/cpuinfo`` (x86 or Arm)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if not model and key in ("model name", "hardware", "cpu model", "processor") and not value.strip().isdigit():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"cpu_model": model or platform.processor() or platform.machine() or "unknown",
            "cpu_flags": [f for f in RELEVANT_FLAGS if f in flags]}


def int8_path(flags: list[str] | set[str]) -> str:
    """The fastest int8 dot-product path the ``flags`` allow (see :data:`INT8_PATHS`), e.g. ``"AVX-512 VNNI"``."""
    return next((name for flag, name in INT8_PATHS if flag in flags), "none of AVX2, AVX-512, VNNI, AMX, Arm dot")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def bench_threads() -> int:
    """Threads every runtime gets: the cores this process may use (:func:`course_utils.base.cpu_count`)."""
    return cpu_count()


def _threads_per_core() -> int | None:
    siblings = _read("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").strip()
    if not siblings:
        return None
    count = 0
    for part in siblings.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return count


def library_versions(names: tuple[str, ...] | None = None) -> dict[str, str]:
    """``{package: installed version or "missing"}`` of ``names`` (default: torch and every registered runtime's
    libraries): what a ratio (or a cached artifact) depends on."""
    from importlib import metadata

    from .registry import runtime_libraries

    names = runtime_libraries() if names is None else names
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def machine_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """The machine a ratio was measured on, as flat JSON-ready keys.

    ``cpu_model`` and ``cpu_flags`` (from ``/proc/cpuinfo``, or ``cpuinfo`` text), ``int8_path`` (the best int8
    instruction set among them), ``cpus_usable`` (:func:`bench_threads`), ``cpus_online``, ``threads_per_core``
    (2 = SMT siblings: two "cores" share one), ``hypervisor`` (a VM: its neighbours can steal time),
    ``torch_cpu_capability`` (the vector ISA eager PyTorch dispatches to), the thread-count environment variables
    set, and the library versions.
    """
    import torch

    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    info = parse_cpuinfo(text)
    raw_flags = set()
    for line in text.splitlines():
        if line.split(":")[0].strip().lower() in ("flags", "features"):
            raw_flags = set(line.partition(":")[2].split())
            break
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = "unknown"
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ}
    return {**info, "int8_path": int8_path(info["cpu_flags"]), "cpus_usable": bench_threads(),
            "cpus_online": os.cpu_count() or 1, "threads_per_core": _threads_per_core(),
            "hypervisor": "hypervisor" in raw_flags, "torch_cpu_capability": capability, "thread_env": env,
            "versions": library_versions()}


def describe_machine(info: Mapping[str, Any]) -> str:
    """One line naming the CPU a number was measured on, e.g. ``"AMD EPYC, 2 usable cores, int8 path AVX-512
    VNNI (avx2 avx512f ...)"``: what a bar or a headline ratio must quote."""
    flags = " ".join(info.get("cpu_flags", ())) or "no flags read"
    return (f"{info.get('cpu_model', 'unknown CPU')}, {info.get('cpus_usable', '?')} usable cores, int8 path "
            f"{info.get('int8_path', '?')} ({flags})")


def load_average() -> list[float]:
    """``os.getloadavg()`` (1, 5, 15 minutes) rounded; ``[]`` where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def _proc_stat() -> tuple[float, float, float] | None:
    """(busy, steal, total) CPU seconds of the whole machine since boot, from ``/proc/stat``'s first line."""
    line = _read("/proc/stat").splitlines()[:1]
    if not line or not line[0].startswith("cpu "):
        return None
    ticks = [float(v) for v in line[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    ticks += [0.0] * (8 - len(ticks))
    idle = ticks[3] + ticks[4]  # idle + iowait
    steal = ticks[7]
    total = sum(ticks[:8])
    return (total - idle - steal) / hz, steal / hz, total / hz


class CpuUse:
    """Who used the CPU during a block: ``with CpuUse() as use: ...``, then ``use.result()``.

    ``cpu_others_share``: the machine's busy time not spent by this process, as a share of all cores' time;
    ``cpu_steal_share``: time the hypervisor gave to other VMs; ``cpu_own_cores``: cores this process kept busy.
    ``None`` values where ``/proc/stat`` is missing (not Linux).
    """

    def __enter__(self) -> CpuUse:
        self._stat, self._own, self._wall = _proc_stat(), _own_cpu(), time.perf_counter()
        self._end: tuple[Any, float, float] | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        self._end = (_proc_stat(), _own_cpu(), time.perf_counter())

    def result(self) -> dict[str, Any]:
        if self._end is None:
            raise RuntimeError("CpuUse.result() is available after the with-block")
        stat, own, wall = self._end
        wall -= self._wall
        own -= self._own
        out: dict[str, Any] = {"cpu_own_cores": round(own / wall, 2) if wall > 0 else None,
                               "cpu_others_share": None, "cpu_steal_share": None}
        if self._stat is not None and stat is not None:
            busy, steal, total = (b - a for a, b in zip(self._stat, stat))
            if total > 0:
                out["cpu_others_share"] = round(max(busy - own, 0.0) / total, 3)
                out["cpu_steal_share"] = round(steal / total, 3)
        return out


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def quiet_machine(use: Mapping[str, Any]) -> bool | None:
    """Whether neither other processes nor the hypervisor took more than :data:`BUSY_SHARE` of the CPU while
    timing (``None`` when unknown)."""
    others, steal = use.get("cpu_others_share"), use.get("cpu_steal_share")
    if others is None or steal is None:
        return None
    return bool(others <= BUSY_SHARE and steal <= BUSY_SHARE)


def runtime_settings(runners: Mapping[str, Any]) -> dict[str, Any]:
    """What each runner runs with, read back from its runtime (not what was asked for), as flat keys
    ``threads_<name>`` and, for OpenVINO, ``<name>_precision`` / ``_hint`` / ``_streams`` / ``_isa``."""
    out: dict[str, Any] = {}
    for name, runner in runners.items():
        settings = runner.settings() if hasattr(runner, "settings") else {}
        for key, value in settings.items():
            out[f"threads_{name}" if key == "threads" else f"{name}_{key}"] = value
    return out
