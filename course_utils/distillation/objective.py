"""Distillation as a loss for the course's one training loop.

:class:`DistillationLoss` is an ``nn.Module`` that ``train.fit`` accepts as ``loss_fn``: it runs the student with
the features its terms need, looks the frozen teacher up (computed once per training example when no random
augmentation changes the inputs, live otherwise), and returns the weighted sum with every term by name. Its own
learnable parts (hint regressors, CRD heads) are trained by ``fit`` with the student. :func:`distill` wires it up.

Layer names: ``"features"`` is the input of the model's ``head`` (the penultimate feature); any other name is a
submodule (e.g. ``"blocks.1"``) whose output is captured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..args import check_number
from ..modules import capture
from ..train import Batch, History, StepOutput, TrainConfig, fit, get_device, seed_everything
from .losses import CRDLoss, HintRegressor, InfoNCELoss, hint_loss, kd_loss

#: Loss terms the objective understands (each gets a weight).
LOSS_TERMS = ("ce", "kd", "hint", "crd", "infonce")
#: Name of the penultimate feature (input of ``head``).
FEATURES = "features"


@dataclass(frozen=True)
class DistillConfig:
    """What to distill: term weights ``{term: weight}`` and each term's settings (RepDistiller's defaults)."""

    losses: Mapping[str, float] = field(default_factory=lambda: {"ce": 0.1, "kd": 0.9})
    temperature: float = 4.0
    hint_layers: Sequence[tuple[str, str]] = ((FEATURES, FEATURES),)
    crd_dim: int = 128
    crd_negatives: int = 4096
    crd_temperature: float = 0.07
    crd_momentum: float = 0.5
    cache_teacher: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "losses", check_weights(self.losses))
        check_number("temperature", self.temperature, 0.0, low_open=True)

    def layers(self) -> tuple[list[str], list[str]]:
        """Student and teacher layers the terms with a positive weight need."""
        s, t = [], []
        if self.losses.get("hint", 0) > 0:
            s += [p[0] for p in self.hint_layers]
            t += [p[1] for p in self.hint_layers]
        if self.losses.get("crd", 0) > 0 or self.losses.get("infonce", 0) > 0:
            s.append(FEATURES)
            t.append(FEATURES)
        return list(dict.fromkeys(s)), list(dict.fromkeys(t))

    @property
    def needs_teacher(self) -> bool:
        return any(w > 0 for k, w in self.losses.items() if k != "ce")


def check_weights(losses: Mapping[str, float]) -> dict[str, float]:
    """Validate a ``{term: weight}`` mapping (terms from ``LOSS_TERMS``, weights >= 0, not all zero)."""
    if not isinstance(losses, Mapping) or not losses:
        raise ValueError(f"losses={losses!r} is not valid; give a non-empty mapping of {list(LOSS_TERMS)} to weights")
    out = {}
    for k, w in losses.items():
        if k not in LOSS_TERMS:
            raise ValueError(f"loss term {k!r} is not valid; choose from {list(LOSS_TERMS)}")
        out[k] = check_number(f"losses[{k!r}]", w, 0.0)
    if not any(out.values()):
        raise ValueError(f"losses={losses!r} has only zero weights; nothing to train")
    return out


def forward_with_features(model: nn.Module, x: torch.Tensor, layers: Sequence[str] = (),
                          detach: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``model(x)`` plus the named layers' outputs (``"features"``: the input of ``model.head``)."""
    if FEATURES in layers and not isinstance(getattr(model, "head", None), nn.Module):
        raise ValueError(f"layer {FEATURES!r} needs a model with a `head` module; {type(model).__name__} has none")
    outputs = [n for n in layers if n != FEATURES]
    with capture(model, ["head"] if FEATURES in layers else [], kind="input", detach=detach) as head_in, \
            capture(model, outputs, kind="output", detach=detach) as seen:
        logits = model(x)
    feats = dict(seen)
    if FEATURES in layers:
        feats[FEATURES] = head_in["head"]
    return logits, feats


# ------------------------------------------------------------------------------------------------ data

class IndexedDataset(Dataset):
    """Wrap a dataset so items are ``(x, y, index)``: CRD's memory bank and the teacher cache need the index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.dataset[i][:2]
        return x, y, i


def with_indices(loader: DataLoader, seed: int = 0, shuffle: bool = True) -> DataLoader:
    """A loader over the same dataset and batch size that also yields the example indices."""
    return DataLoader(IndexedDataset(loader.dataset), batch_size=loader.batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, dataset: Dataset, layers: Sequence[str] = (), batch_size: int = 256,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and captured layers of a frozen teacher for every example of ``dataset``, in index order."""
    teacher.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    logits, feats = [], {n: [] for n in layers}
    for batch in loader:
        lg, fs = forward_with_features(teacher, batch[0].to(device), layers, detach=True)
        logits.append(lg.float())
        for n in layers:
            feats[n].append(fs[n].float())
    return torch.cat(logits), {n: torch.cat(v) for n, v in feats.items()}


# ------------------------------------------------------------------------------------------------ the loss

class DistillationLoss(nn.Module):
    """``fit`` loss: the weighted sum of the configured terms for a student and a frozen teacher.

    ``dataset`` is the training set the loader iterates with indices (for CRD's memory bank and the teacher cache).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, config: DistillConfig, dataset: Dataset,
                 cache_teacher: bool = True) -> None:
        super().__init__()
        if config.needs_teacher and teacher is None:
            raise ValueError(f"losses={dict(config.losses)} need a teacher; pass teacher= or use {{'ce': 1.0}} only")
        self.config, self.weights = config, {k: w for k, w in config.losses.items() if w > 0}
        self.teacher = [teacher]  # a list: the frozen teacher is not a submodule (not trained, not saved)
        self.s_layers, self.t_layers = config.layers()
        n_data = len(dataset)  # type: ignore[arg-type]
        x0 = dataset[0][0].unsqueeze(0)
        device = next(student.parameters()).device
        with torch.no_grad():
            was = student.training
            s0 = forward_with_features(student.eval(), x0.to(device), self.s_layers, detach=True)
            student.train(was)
            t0 = (self._teacher_forward(x0.to(device)) if teacher is not None else (s0[0], {}))
        self._check_classes(s0[0], t0[0])
        s_dim = {k: v.shape[-1] for k, v in s0[1].items()}
        t_dim = {k: v.shape[-1] for k, v in t0[1].items()}
        self.hint_layers = [tuple(p) for p in config.hint_layers] if "hint" in self.weights else []
        self.regressors = nn.ModuleList(HintRegressor(s_dim[s], t_dim[t]) for s, t in self.hint_layers)
        self.crd = (CRDLoss(s_dim[FEATURES], t_dim[FEATURES], n_data, config.crd_dim, min(config.crd_negatives, n_data),
                            config.crd_temperature, config.crd_momentum) if "crd" in self.weights else None)
        self.infonce = (InfoNCELoss(s_dim[FEATURES], t_dim[FEATURES], config.crd_dim, config.crd_temperature)
                        if "infonce" in self.weights else None)
        self.cache = None
        if teacher is not None and config.needs_teacher and cache_teacher:
            self.cache = teacher_outputs(teacher, dataset, self.t_layers, device=device)

    @staticmethod
    def _check_classes(s_logits: torch.Tensor, t_logits: torch.Tensor) -> None:
        if s_logits.shape[-1] != t_logits.shape[-1]:
            raise ValueError(f"student has {s_logits.shape[-1]} classes but teacher has {t_logits.shape[-1]}; "
                             "distillation needs the same classes")

    @torch.no_grad()
    def _teacher_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher = self.teacher[0].eval()
        return forward_with_features(teacher, x, self.t_layers, detach=True)

    def forward(self, student: nn.Module, batch: Batch) -> StepOutput:
        s_logits, s_feats = forward_with_features(student, batch.x, self.s_layers)
        if not self.config.needs_teacher:
            t_logits, t_feats = None, {}
        elif self.cache is not None:
            if batch.index is None:
                raise ValueError("the teacher cache needs example indices: wrap the loader with with_indices()")
            t_logits, t_feats = self.cache[0][batch.index], {k: v[batch.index] for k, v in self.cache[1].items()}
        else:
            t_logits, t_feats = self._teacher_forward(batch.x)
        terms: dict[str, torch.Tensor] = {}
        if "ce" in self.weights:
            terms["ce"] = F.cross_entropy(s_logits, batch.y)
        if "kd" in self.weights:
            terms["kd"] = kd_loss(s_logits, t_logits, self.config.temperature)
        if self.hint_layers:
            terms["hint"] = sum(hint_loss(s_feats[s], t_feats[t], reg)
                                for (s, t), reg in zip(self.hint_layers, self.regressors)) / len(self.hint_layers)
        if self.crd is not None:
            if batch.index is None:
                raise ValueError("CRD needs example indices: wrap the loader with with_indices()")
            terms["crd"] = self.crd(s_feats[FEATURES], t_feats[FEATURES], batch.index)
        if self.infonce is not None:
            terms["infonce"] = self.infonce(s_feats[FEATURES], t_feats[FEATURES])
        total = sum(self.weights[k] * v for k, v in terms.items())
        return StepOutput(total, s_logits, terms)


_DISTILL_FIELDS = {f.name for f in dataclasses.fields(DistillConfig)}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def distill(student: nn.Module, teacher: nn.Module | None, train_loader: DataLoader,
            test_loader: DataLoader | None = None, losses: Mapping[str, float] | None = None,
            config: DistillConfig | None = None, train: TrainConfig | None = None, *,
            augment: Callable[[torch.Tensor], torch.Tensor] | None = None, **settings: Any) -> History:
    """Train ``student`` on a weighted sum of loss terms from a frozen ``teacher`` with ``train.fit``.

    ``losses`` maps terms of ``LOSS_TERMS`` to weights (default ``{"ce": 0.1, "kd": 0.9}``); ``{"ce": 1}`` with
    ``teacher=None`` trains from scratch on the same loop and schedule. Keyword ``settings`` may be fields of
    :class:`DistillConfig` (``temperature``, ``hint_layers``, ``crd_*``, ``cache_teacher``) or of
    ``TrainConfig`` (``epochs``, ``lr``, ``grad_clip``, ...; the seed defaults to 0 and the learning rate to 2e-3).
    With ``augment`` the teacher runs on each augmented batch; otherwise its outputs are computed once.
    """
    unknown = set(settings) - _DISTILL_FIELDS - _TRAIN_FIELDS
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; choose from DistillConfig {sorted(_DISTILL_FIELDS)} "
                         f"or TrainConfig {sorted(_TRAIN_FIELDS)}")
    d_kw = {k: v for k, v in settings.items() if k in _DISTILL_FIELDS}
    if losses is not None:
        d_kw["losses"] = losses
    cfg = dataclasses.replace(config or DistillConfig(), **d_kw)
    t_kw = {k: v for k, v in settings.items() if k in _TRAIN_FIELDS}
    tcfg = dataclasses.replace(train or TrainConfig(lr=2e-3, seed=0, device="cpu", desc="distill"), **t_kw)
    device = get_device(tcfg.device)
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    student.to(device)
    if tcfg.seed is not None:
        seed_everything(tcfg.seed)  # the regressors, embedding heads and memory bank start the same every run
    loader = with_indices(train_loader, seed=tcfg.seed or 0)
    cache = cfg.cache_teacher and augment is None
    criterion = DistillationLoss(student, teacher, cfg, loader.dataset, cache_teacher=cache)
    return fit(student, loader, test_loader, tcfg, loss_fn=criterion, augment=augment)
