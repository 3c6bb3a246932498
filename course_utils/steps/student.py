"""The ``student-M`` step: a smaller model of the family distilled from the current one with method M (always the
first step of a recipe: distill, then compress), and the distillation recipe it shares with notebook 04."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..args import check_choice
from ..data import DataBundle
from ..distillation import distill
from ..models import build_model
from ..train import History
from .registry import Step, StepContext, register_step

#: Students: the preset distilled from each family, and the distillation recipe. Notebook 04 shows why: the scratch
#: student's accuracy has flattened after these epochs, and the temperature and KD weight won a small grid on a
#: validation split. The FitNets and CRD weights are RepDistiller's (its beta).
STUDENT_SIZE = {"vit": "nano", "cnn": "tiny"}
STUDENT_EPOCHS = {"vit": 20, "cnn": 8}  # the ConvNet family learns MNIST in a few epochs (its baselines train 8)
STUDENT = {"lr": 1.2e-2, "weight_decay": 0.05, "grad_clip": 1.0, "temperature": 2.0, "kd_weight": 0.5,
           "hint_weight": 100.0, "crd_weight": 0.8, "crd_negatives": 1024, "eval_every": 2}
STUDENT_METHODS = ("scratch", "kd", "fitnet", "crd", "crd+kd", "infonce")


def student_losses(method: str, kd_weight: float | None = None) -> dict[str, float]:
    """Loss weights of a student method (``scratch``, ``kd``, ``fitnet``, ``crd``, ``crd+kd``, ``infonce``)."""
    check_choice("method", method, STUDENT_METHODS)
    w = STUDENT["kd_weight"] if kd_weight is None else kd_weight
    kd = {"ce": 1.0 - w, "kd": w}
    return {"scratch": {"ce": 1.0}, "kd": kd, "fitnet": {"ce": 1.0, "hint": STUDENT["hint_weight"]},
            "crd": {"ce": 1.0, "crd": STUDENT["crd_weight"]}, "crd+kd": {**kd, "crd": STUDENT["crd_weight"]},
            "infonce": {"ce": 1.0, "infonce": STUDENT["crd_weight"]}}[method]


def distill_student(teacher: nn.Module | None, method: str, bundle: DataBundle, family: str = "vit",
                    norm: str = "dyt", seed: int = 0, smoke: bool = False, device: str = "cpu",
                    size: str | None = None, student: nn.Module | None = None,
                    **overrides: Any) -> tuple[nn.Module, History]:
    """A new student of ``size`` (default :data:`STUDENT_SIZE`) trained with the zoo's recipe from ``teacher``
    (``method="scratch"``: labels only, no teacher). ``overrides`` change the recipe (``epochs``, ``temperature``,
    ``kd_weight``, ``losses``...): notebook 04 uses them for its grid, its seeds and its little-data study.
    A given ``student`` is trained in place instead of a new one."""
    info = bundle.info
    r = {**STUDENT, "epochs": STUDENT_EPOCHS[family], **overrides}
    losses = r.pop("losses", None) or student_losses(method, r["kd_weight"])
    if student is None:
        torch.manual_seed(seed)
        student = build_model(family, norm, info.num_classes, info.input_shape, size or STUDENT_SIZE[family])
    history = distill(student, None if method == "scratch" else teacher, bundle.train_loader, bundle.test_loader,
                      losses=losses, epochs=1 if smoke else r["epochs"], lr=r["lr"], weight_decay=r["weight_decay"],
                      grad_clip=r["grad_clip"], temperature=r["temperature"],
                      crd_negatives=min(r["crd_negatives"], len(bundle.train_loader.dataset)), seed=seed,
                      eval_every=r["eval_every"], device=device, progress=False)
    return student.eval(), history


@register_step
class Student(Step):
    """Distill a smaller student of the same family and norm (``scratch``: the same student on labels only)."""

    kind, trained, first_only = "student", True, True
    pattern, form = r"student-(?P<method>[a-z+]+)", f"student-M with M in {list(STUDENT_METHODS)}"
    examples = ("student-kd", "student-fitnet")

    def check(self) -> None:
        check_choice("student method", self.method, STUDENT_METHODS)

    @property
    def method(self) -> str:
        return self.args["method"]

    def size(self, ctx: StepContext) -> str:
        return ctx.student_size or STUDENT_SIZE[ctx.family]

    def key(self, ctx: StepContext) -> dict[str, Any]:
        return {"student": {**STUDENT, "epochs": STUDENT_EPOCHS[ctx.family], "size": self.size(ctx),
                            "losses": student_losses(self.method)}}

    def start(self, parent: nn.Module, ctx: StepContext) -> nn.Module:
        info = ctx.bundle.info
        return build_model(ctx.family, ctx.norm, info.num_classes, info.input_shape, self.size(ctx))

    def train(self, model: nn.Module, parent: nn.Module, ctx: StepContext) -> History:
        return distill_student(parent, self.method, ctx.bundle, ctx.family, ctx.norm, ctx.seed, ctx.smoke,
                               ctx.device, self.size(ctx), student=model)[1]
