"""The registry of deployment runtimes: each runtime is one :class:`EdgeRuntime` registered by its own module.

A runtime says what it offers (``precisions``, which of them need ``calibration``, the attention form its exporter
handles best), what its artifacts depend on (``libraries``, recorded in every manifest and by the bench) and how
to make a runner: an *artifact* runtime writes files (``build``) that ``load`` turns into a runner; an
*in-process* runtime (eager PyTorch, ``torch.compile``) makes the runner directly (``make``). The deployment API
loops over this registry and never falls through to a default, so a new runtime is one new module and its test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``build(ready_model, precision, example_shape, folder, calibration_batches, batch_sizes, threads)`` returns the
#: artifact's files (``{role: file name inside folder}``) and facts about the graph.
Build = Callable[..., tuple[dict[str, str], dict[str, Any]]]
#: ``load(folder, files, precision, batch_sizes, threads, info)`` returns the runner.
Load = Callable[..., Any]
#: ``make(model, precision, example_shape, batch_sizes, calibration_batches, backend)`` returns the runner.
Make = Callable[..., Any]


@dataclass(frozen=True)
class EdgeRuntime:
    """One runtime and everything the deployment API needs to know about it."""

    name: str
    precisions: tuple[str, ...]
    calibrated: tuple[str, ...] = ()  # precisions that set activation ranges from real images
    attention: str | None = None  # "bmm" or "sdpa" for exported graphs; None in process
    libraries: tuple[str, ...] = ()  # whose versions an artifact depends on (torch always)
    export_seconds: Mapping[str, float] = field(default_factory=dict)  # rough cost, longest exports start first
    loggers: tuple[str, ...] = ()  # loggers whose chatter the exports silence
    order: int = 100  # where tables list it (eager references first)
    per_batch_size: bool = False  # builds one program per batch size (so the batch sizes key the artifact)
    build: Build | None = None
    load: Load | None = None
    make: Make | None = None

    def __post_init__(self) -> None:
        if not self.precisions or not set(self.calibrated) <= set(self.precisions):
            raise ValueError(f"runtime {self.name!r}: precisions {self.precisions} must include {self.calibrated}")
        artifact = self.build is not None and self.load is not None
        if artifact == (self.make is not None):
            raise ValueError(f"runtime {self.name!r} needs either build and load (an artifact) or make (in process)")
        if artifact and self.attention not in ("bmm", "sdpa"):
            raise ValueError(f"runtime {self.name!r}: attention must be 'bmm' or 'sdpa' for an exported graph")

    @property
    def in_process(self) -> bool:
        return self.make is not None


RUNTIME_REGISTRY: dict[str, EdgeRuntime] = {}


def register_runtime(runtime: EdgeRuntime) -> EdgeRuntime:
    """Add a runtime (its name must be new)."""
    if runtime.name in RUNTIME_REGISTRY:
        raise ValueError(f"a runtime named {runtime.name!r} is already registered")
    RUNTIME_REGISTRY[runtime.name] = runtime
    return runtime


def registered() -> list[EdgeRuntime]:
    """Every registered runtime, in the order tables list them."""
    return sorted(RUNTIME_REGISTRY.values(), key=lambda r: r.order)


def runtime_libraries() -> tuple[str, ...]:
    """torch and every library a registered runtime depends on."""
    return tuple(dict.fromkeys(["torch", *(lib for r in registered() for lib in r.libraries)]))


def runtime_loggers() -> tuple[str, ...]:
    return tuple(dict.fromkeys(log for r in registered() for log in r.loggers))


def runtime(name: str) -> EdgeRuntime:
    """The registered runtime ``name``; a ValueError names the registered ones."""
    if name not in RUNTIME_REGISTRY:
        raise ValueError(f"runtime={name!r} is not valid; choose one of {[r.name for r in registered()]}")
    return RUNTIME_REGISTRY[name]
