"""Deploy a (compressed) course model to edge runtimes, check it still computes the same thing, and time it.

``deploy(model, runtime, precision, calibration=...)`` exports to ONNX Runtime, OpenVINO (+NNCF int8) or
ExecuTorch (XNNPACK, fp32 and PT2E int8) and returns a :class:`Runner`: callable on a torch batch (a
``metrics.benchmark`` candidate), with ``predict``, its artifact ``path`` and ``size_bytes``. PyTorch's own
references are runners too: ``"pytorch"`` (eager fp32, torchao dynamic int8) and ``"torch_compile"`` (fp32, and
torchao's PT2E static int8 lowered to int8 kernels by inductor). ``deploy_many`` exports several models side
by side; an artifact built from the same model and settings is reused. ``python -m course_utils.deploy --bench``
times them all on the ViT-DyT baseline and records what the ratios depend on (:mod:`.machine`: the CPU, its
instruction sets, the threads each runtime used, the load). ``pick_edge_model`` is the one rule for choosing the
deployment to ship within a size and latency budget (notebooks 06 and 07).

Modules: :mod:`.registry` (every runtime is one registered ``EdgeRuntime``; a new runtime is one new module that
registers itself), :mod:`.attention` (SDPA -> 3-D bmm rewrite), :mod:`.runtimes` (one module per runtime: ``pytorch``,
``onnx_runtime``, ``openvino_nncf``, ``executorch_xnnpack``), :mod:`.runners` (Runner, the PyTorch references),
:mod:`.parity`, :mod:`.api`, :mod:`.bench`, :mod:`.machine`, :mod:`.pick`.
"""

from __future__ import annotations

from .api import NEEDS_CALIBRATION, RUNTIMES, TARGETS, build_artifact, check_target, deploy, deploy_all, deploy_many
from .attention import BmmAttention, attention_layers, export_friendly
from .common import DeploymentError, calibration_batches, default_workdir
from .machine import bench_threads, describe_machine, load_average, machine_info, runtime_settings
from .parity import TOLERANCES, DeploymentMismatchError, ParityReport, Tolerance, check_parity
from .pick import accuracy_floor, edge_candidates, pick_edge_model
from .runners import Runner, TorchRunner, compiled_runner, eager_runner
from .runtimes.executorch_xnnpack import executorch_threads, xnnpack_partitions

__all__ = ["BmmAttention", "DeploymentError", "DeploymentMismatchError", "NEEDS_CALIBRATION", "ParityReport",
           "RUNTIMES", "Runner", "TARGETS", "TOLERANCES", "Tolerance", "TorchRunner", "accuracy_floor",
           "attention_layers", "bench_threads", "build_artifact", "calibration_batches", "check_parity",
           "check_target", "compiled_runner", "default_workdir", "deploy", "deploy_all", "deploy_many",
           "describe_machine", "edge_candidates", "eager_runner", "executorch_threads", "export_friendly",
           "load_average", "machine_info", "pick_edge_model", "runtime_settings", "xnnpack_partitions"]
