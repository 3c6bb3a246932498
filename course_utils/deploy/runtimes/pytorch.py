"""PyTorch's own references, in process: eager (fp32, torchao dynamic int8) and ``torch.compile`` (fp32, and
torchao's PT2E static int8 lowered to int8 kernels by inductor). The runners themselves are in :mod:`..runners`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..registry import EdgeRuntime, register_runtime
from ..runners import TorchRunner, compiled_runner, eager_runner


def _eager(model: nn.Module, precision: str, shape: Sequence[int], sizes: Sequence[int], batches: Any,
           backend: str) -> TorchRunner:
    return eager_runner(model, precision)


def _compiled(model: nn.Module, precision: str, shape: Sequence[int], sizes: Sequence[int], batches: Any,
              backend: str) -> TorchRunner:
    return compiled_runner(model, shape, sizes, backend=backend, precision=precision, calibration=batches)


register_runtime(EdgeRuntime("pytorch", ("fp32", "int8_dynamic"), order=0, make=_eager))
register_runtime(EdgeRuntime("torch_compile", ("fp32", "int8_static"), calibrated=("int8_static",),
                             loggers=("torch._dynamo", "torch._inductor"), order=1, make=_compiled))
