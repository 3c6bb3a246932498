"""Knowledge distillation: the losses (:mod:`.losses`), the objective that ``train.fit`` trains with
(:mod:`.objective`) and what a study with few student seeds can conclude (:mod:`.readings`). Teacher
comparisons (agreement, logit cosine, CKA) live in ``course_utils.metrics``."""

from .losses import (
    ContrastMemory,
    CRDLoss,
    Embed,
    HintRegressor,
    InfoNCELoss,
    hint_loss,
    info_nce_loss,
    kd_loss,
    kd_objective,
    kd_weights,
    nce_loss,
)
from .objective import (
    FEATURES,
    LOSS_TERMS,
    STEP_TERMS,
    DistillationLoss,
    DistillConfig,
    DistillStep,
    IndexedDataset,
    check_weights,
    distill,
    distill_step,
    forward_with_features,
    teacher_outputs,
    with_indices,
)
from .readings import seeds_caveat, teacher_size_reading

__all__ = [
    "CRDLoss", "ContrastMemory", "DistillConfig", "DistillStep", "DistillationLoss", "Embed", "FEATURES",
    "HintRegressor", "IndexedDataset", "InfoNCELoss", "LOSS_TERMS", "STEP_TERMS", "check_weights", "distill",
    "distill_step", "forward_with_features", "hint_loss", "info_nce_loss", "kd_loss", "kd_objective", "kd_weights",
    "nce_loss", "teacher_outputs", "with_indices", "seeds_caveat", "teacher_size_reading"
]
