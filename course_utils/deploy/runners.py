"""One object per deployed model, whatever runs it, so a notebook can time and check them all the same way.

A :class:`Runner` is callable on a torch batch (so it is a ``metrics.benchmark`` candidate), has ``predict`` for
numpy or torch input of any batch size, and says where its artifact lives and how many bytes it takes. The eager
references (fp32 and torch.ao dynamic int8) and torch.compile are runners too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..metrics import size_on_disk
from ..modules import clone_model
from .common import DeploymentMismatchError, as_numpy, check_batch_sizes


class Runner:
    """A deployed model: ``runner(x_torch) -> logits_torch`` and ``runner.predict(x) -> logits_numpy``.

    ``runtime``/``precision`` say what it is, ``path`` where its artifact lies (``None`` for in-memory models),
    ``size_bytes`` its size on disk, ``info`` runtime facts (e.g. XNNPACK partitions), ``parity`` the last
    :func:`~course_utils.deploy.parity.check_parity` report made at deployment (or ``None``).
    """

    def __init__(self, runtime: str, precision: str, path: Path | None, size_bytes: int,
                 info: dict[str, Any] | None = None) -> None:
        self.runtime, self.precision = runtime, precision
        self.path = path
        self.size_bytes = int(size_bytes)
        self.info: dict[str, Any] = dict(info or {})
        self.parity: Any = None
        #: Batch sizes the artifact was built for (``None``: any); ``predict`` pads other sizes up to one of them.
        self.fixed_batch_sizes: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        """``<runtime>_<precision>``, e.g. ``openvino_int8``: the key used in tables and the bench JSON."""
        return f"{self.runtime}_{self.precision}"

    def _run_numpy(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch (subclasses implement one of the two ``_run`` methods)."""
        return self._run_torch(torch.from_numpy(x)).numpy()

    def _run_torch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._run_numpy(as_numpy(x)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (torch, float32) of one batch; what ``metrics.benchmark`` times."""
        return self._run_torch(x)

    def predict(self, x: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits (numpy, float32) of any number of images, run ``batch_size`` at a time."""
        x = as_numpy(x)
        if x.ndim != 4 or len(x) == 0:
            raise ValueError(f"predict expects images (N, C, H, W) with N >= 1; got shape {x.shape}")
        sizes = self.fixed_batch_sizes
        if sizes:
            batch_size = max(sizes)
        out = []
        for i in range(0, len(x), batch_size):
            chunk = x[i:i + batch_size]
            if sizes and len(chunk) not in sizes:  # pad up to a built size, keep the real rows
                bs = min(b for b in sizes if b >= len(chunk))
                padded = np.zeros((bs, *chunk.shape[1:]), dtype=np.float32)
                padded[:len(chunk)] = chunk
                out.append(self._run_numpy(padded)[:len(chunk)])
            else:
                out.append(self._run_numpy(chunk))
        return np.concatenate(out)

    def settings(self) -> dict[str, Any]:
        """What this runner runs with, read back from its runtime: at least ``threads`` (the intra-op threads of
        one inference). A benchmark records these next to its ratios."""
        return {}

    def describe(self) -> dict[str, Any]:
        """One table row: name, size (kB), artifact file, runtime facts and parity numbers."""
        row: dict[str, Any] = {"name": self.name, "runtime": self.runtime, "precision": self.precision,
                               "size_kb": self.size_bytes / 1024,
                               "artifact": self.path.name if self.path is not None else None, **self.info}
        if self.parity is not None:
            row.update(self.parity.as_dict())
        return row

    def __repr__(self) -> str:
        where = f", path={self.path.name!r}" if self.path is not None else ""
        return f"{type(self).__name__}({self.name}, {self.size_bytes / 1024:.0f} kB{where})"


class TorchRunner(Runner):
    """A PyTorch module run eagerly (or compiled) under ``torch.no_grad``."""

    def __init__(self, module: nn.Module | Any, runtime: str, precision: str, size_bytes: int,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(runtime, precision, None, size_bytes, info)
        self.module = module

    def _run_torch(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x.float()).float()

    def settings(self) -> dict[str, Any]:
        """Eager PyTorch uses the process's intra-op pool: ``torch.get_num_threads()`` now (``metrics.benchmark``
        sets it to its ``num_threads`` while timing). A compiled runner's OpenMP loops keep the count they were
        compiled with (``threads_at_compile``)."""
        out: dict[str, Any] = {"threads": torch.get_num_threads()}
        if "threads_at_compile" in self.info:
            out["threads_at_compile"] = self.info["threads_at_compile"]
        return out


def eager_runner(model: nn.Module, precision: str = "fp32") -> TorchRunner:
    """The reference: ``model`` itself in eval mode (``"fp32"``), or a torchao dynamic int8 copy
    (``"int8_dynamic"``, int8 Linear weights; usually *slower* than fp32 on small models: many tiny ops)."""
    if precision == "fp32":
        model = model.cpu().eval()
        return TorchRunner(model, "pytorch", "fp32", size_on_disk(model))
    if precision == "int8_dynamic":
        from ..quantization.int8 import dynamic_int8

        q = dynamic_int8(model)
        return TorchRunner(q, "pytorch", "int8_dynamic", size_on_disk(q))
    raise ValueError(f"precision={precision!r} is not valid for runtime 'pytorch'; choose 'fp32' or 'int8_dynamic'")


def compiled_runner(model: nn.Module, example_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 64),
                    backend: str = "inductor", atol: float = 1e-4, precision: str = "fp32",
                    calibration: Any = None) -> TorchRunner:
    """``torch.compile`` of a fresh copy of ``model``, checked against that copy at every batch size.

    ``precision="int8_static"`` compiles torchao's PT2E static int8 copy (calibrated on ``calibration``) with
    inductor, which lowers its quantize/dequantize patterns to int8 kernels; the check then allows int8 rounding
    (output cosine to the eager PT2E graph at least 0.999) instead of ``atol``.

    Dynamo caches compiled code per *code object*: a second model of the same class can reuse the first one's
    cache entries, and after ``cache_size_limit`` recompiles it silently falls back to eager. So the caches are
    reset first (``torch.compiler.reset()``; runners compiled before recompile on their next call) and the outputs
    are compared with the copy's own eager outputs; a mismatch raises a ``DeploymentMismatchError``.
    """
    from ..quantization.int8 import compile_int8, static_int8

    sizes = check_batch_sizes(batch_sizes)
    if precision not in ("fp32", "int8_static"):
        raise ValueError(f"precision={precision!r} is not valid for runtime 'torch_compile'; choose 'fp32' or "
                         "'int8_static'")
    torch.compiler.reset()
    if precision == "int8_static":
        if calibration is None:
            raise ValueError("torch_compile int8_static needs calibration=... (real images)")
        if backend != "inductor":
            raise ValueError(f"backend={backend!r}: int8 kernels come from inductor's lowering; use 'inductor'")
        fresh = static_int8(model, calibration)
        compiled = compile_int8(fresh)
    else:
        fresh = clone_model(model, fold=True).cpu().eval()
        compiled = torch.compile(fresh, backend=backend, dynamic=False)
    gen = torch.Generator().manual_seed(0)
    worst, cosine = 0.0, 1.0
    with torch.no_grad():
        for bs in sizes:
            x = torch.randn(bs, *example_shape, generator=gen)
            got, ref = compiled(x), fresh(x)
            worst = max(worst, (got - ref).abs().max().item())
            cosine = min(cosine, torch.nn.functional.cosine_similarity(got, ref, dim=1).mean().item())
    if precision == "fp32" and not worst <= atol or precision == "int8_static" and not cosine >= 0.999:
        raise DeploymentMismatchError(f"torch.compile ({backend}, {precision}) output differs from its own model "
                                      f"(max {worst:.2e}, cosine {cosine:.4f}): a stale compiled graph? (reset with "
                                      "torch.compiler.reset())")
    runner = TorchRunner(compiled, "torch_compile", precision, size_on_disk(fresh),
                         info={"backend": backend, "max_abs_diff_at_build": worst, "cosine_at_build": cosine,
                               "threads_at_compile": torch.get_num_threads()})
    runner.fixed_batch_sizes = sizes  # other sizes would recompile (dynamic=False); predict pads instead
    return runner

