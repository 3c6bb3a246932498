"""Recipe steps, one registered class per kind (:mod:`.registry`): a new kind of step is one new module here (every
module of this folder is imported, which registers its steps).

- :mod:`.training`: the fine-tuning recipes and the calibration images every step shares;
- :mod:`.pruning`: ``unstructured-N``, ``gradual-N``, ``structured-N``;
- :mod:`.finetuning`: the controls ``finetune`` and ``qat-control``;
- :mod:`.quantization`: ``qat-wBaB``, ``ptq-wBaB``, ``dynamic-int8``/``static-int8``, ``float16``/``bfloat16``;
- :mod:`.student`: ``student-M``.
"""

import importlib
import pkgutil

from .registry import STEPS, Step, StepContext, parse_step, register_step, step_examples, step_forms
from .student import STUDENT, STUDENT_EPOCHS, STUDENT_METHODS, STUDENT_SIZE, distill_student, student_losses
from .training import (
    CALIBRATION_IMAGES,
    FINETUNE,
    FINETUNE_SUBSET,
    GRADUAL,
    QAT,
    FinetuneRecipe,
    calibration_images,
    calibration_set,
    finetune,
    finetune_steps,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):  # importing a step module registers its steps
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "CALIBRATION_IMAGES", "FINETUNE", "FINETUNE_SUBSET", "FinetuneRecipe", "GRADUAL", "QAT", "STEPS", "STUDENT",
    "STUDENT_EPOCHS", "STUDENT_METHODS", "STUDENT_SIZE", "Step", "StepContext", "calibration_images", "calibration_set",
    "distill_student", "finetune", "finetune_steps", "parse_step", "register_step", "step_examples", "step_forms",
    "student_losses",
]
