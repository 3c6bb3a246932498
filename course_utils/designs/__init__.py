"""Design tasks (:mod:`.registry`): a new task is one new module here (every module of this folder is imported,
which registers its tasks).

- :mod:`.pruning_budget`: ``prune-budget``, per-layer sparsities for at most 25% of the weights within 1 point.
- :mod:`.mixed_budget`: ``mixed-budget``, per-layer weight bits in 2.5 bits per weight on average within 1 point.
- :mod:`.distill_budget`: ``distill-budget``, a student recipe at most 60% of the teacher's latency within 1.5 points.
"""

import importlib
import pkgutil

from .registry import (
    DATASET,
    DESIGNS,
    SEED,
    SPLITS,
    DesignResult,
    DesignTask,
    Target,
    baseline,
    check_per_layer,
    evaluate,
    get_design,
    read_config,
    register_design,
    split_data,
    split_indices,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):  # importing a task module registers it
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["DATASET", "DESIGNS", "SEED", "SPLITS", "DesignResult", "DesignTask", "Target", "baseline",
           "check_per_layer", "evaluate", "get_design", "read_config", "register_design", "split_data", "split_indices"]
