"""Distillation as a loss for the course's one training loop.

:class:`DistillationLoss` is an ``nn.Module`` that ``train.fit`` accepts as ``loss_fn``: it runs the student with
the features its terms need, looks the frozen teacher up (computed once per training example when no random
augmentation changes the inputs, live otherwise), and returns the weighted sum with every term by name. Its own
learnable parts (hint regressors, CRD heads) are trained by ``fit`` with the student. :func:`distill` wires it up.

:func:`distill_step` is one optimizer step of the same loop for the logit and hint terms, written out as a plain
function (notebook 04's exercise 4): ``distill(..., step=distill_step)`` trains with it and gives the student of
``distill(..., cache_teacher=False)``; a step of the same signature written by hand goes in its place.

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
from ..train import Batch, History, LossFn, StepFn, StepOutput, TrainConfig, fit, get_device, seed_everything
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


# ------------------------------------------------------------------------------------------------ the step

#: Terms a :data:`DistillStep` computes, in the order :class:`DistillationLoss` sums them.
STEP_TERMS = ("ce", "kd", "hint")
#: ``step(student, teacher, regressor, optimizer, x, y, weights, temperature) -> loss`` (a float): one optimizer step.
DistillStep = Callable[[nn.Module, nn.Module, "nn.Module | None", torch.optim.Optimizer, torch.Tensor, torch.Tensor,
                        Mapping[str, float], float], float]


def distill_step(student: nn.Module, teacher: nn.Module, regressor: nn.Module | None, optimizer: torch.optim.Optimizer,
                 x: torch.Tensor, y: torch.Tensor, weights: Mapping[str, float], temperature: float) -> float:
    """One optimizer step of logit + hint distillation; returns the loss before the update.

    The loss is ``weights["ce"] * CE + weights["kd"] * kd_loss(T) + weights["hint"] * hint_loss`` on the penultimate
    features (``regressor`` maps the student's to the teacher's width; ``None`` without a hint term). The teacher
    runs in eval mode without autograd (frozen: no gradients, no BatchNorm statistics or dropout of its own), the
    student in train mode; ``optimizer`` holds the student's and the regressor's parameters. These are the numbers
    :class:`DistillationLoss` and ``train.train_step`` compute for the same batch.
    """
    unknown = set(weights) - set(STEP_TERMS)
    if unknown:
        raise ValueError(f"weights for {sorted(unknown)} are not valid here; a step takes {list(STEP_TERMS)}")
    w = {k: weights.get(k, 0.0) for k in STEP_TERMS if weights.get(k, 0.0) > 0}
    layers = [FEATURES] if "hint" in w else []
    teacher.eval()
    with torch.no_grad():
        t_logits, t_feats = forward_with_features(teacher, x, layers)
    student.train()
    s_logits, s_feats = forward_with_features(student, x, layers)
    terms = {"ce": lambda: F.cross_entropy(s_logits, y), "kd": lambda: kd_loss(s_logits, t_logits, temperature),
             "hint": lambda: hint_loss(s_feats[FEATURES], t_feats[FEATURES], regressor)}
    loss = sum(w[k] * terms[k]() for k in w)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _fit_step(step: DistillStep, teacher: nn.Module, criterion: DistillationLoss) -> StepFn:
    """``fit``'s step hook that runs a :data:`DistillStep`. The recipe's gradient clipping runs in a pre-hook of
    ``optimizer.step()`` (where ``train_step`` clips), and the student's logits, for the training accuracy, come
    from a forward hook: the step itself only returns the loss."""
    regressor = criterion.regressors[0] if len(criterion.regressors) else None
    weights = {k: float(criterion.config.losses.get(k, 0.0)) for k in STEP_TERMS}

    def run(model: nn.Module, batch: Batch, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
            params: list[nn.Parameter], grad_clip: float | None) -> StepOutput:
        seen: list[torch.Tensor] = []

        def keep(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            seen.append(out.detach())

        def clip(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            nn.utils.clip_grad_norm_(params, grad_clip)

        hooks = [model.register_forward_hook(keep)]
        if grad_clip is not None:
            hooks.append(optimizer.register_step_pre_hook(clip))
        try:
            loss = step(model, teacher, regressor, optimizer, batch.x, batch.y, dict(weights),
                        criterion.config.temperature)
        finally:
            for h in hooks:
                h.remove()
        if not seen:
            raise ValueError(f"the step {getattr(step, '__qualname__', step)} never ran the student on the batch")
        return StepOutput(torch.as_tensor(float(loss)), seen[-1])

    return run


_DISTILL_FIELDS = {f.name for f in dataclasses.fields(DistillConfig)}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def distill(student: nn.Module, teacher: nn.Module | None, train_loader: DataLoader,
            test_loader: DataLoader | None = None, losses: Mapping[str, float] | None = None,
            config: DistillConfig | None = None, train: TrainConfig | None = None, *,
            augment: Callable[[torch.Tensor], torch.Tensor] | None = None, step: DistillStep | None = None,
            **settings: Any) -> History:
    """Train ``student`` on a weighted sum of loss terms from a frozen ``teacher`` with ``train.fit``.

    ``losses`` maps terms of ``LOSS_TERMS`` to weights (default ``{"ce": 0.1, "kd": 0.9}``); ``{"ce": 1}`` with
    ``teacher=None`` trains from scratch on the same loop and schedule. Keyword ``settings`` may be fields of
    :class:`DistillConfig` (``temperature``, ``hint_layers``, ``crd_*``, ``cache_teacher``) or of
    ``TrainConfig`` (``epochs``, ``lr``, ``grad_clip``, ...; the seed defaults to 0 and the learning rate to 2e-3).
    With ``augment`` the teacher runs on each augmented batch; otherwise its outputs are computed once.
    ``step`` (e.g. :func:`distill_step`) takes every optimizer step instead of ``train.train_step`` with the
    objective: the teacher then runs live on each batch, the terms are ``ce``, ``kd`` and ``hint`` on the penultimate
    features, and the history has no per-term losses.
    """
    unknown = set(settings) - _DISTILL_FIELDS - _TRAIN_FIELDS
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; choose from DistillConfig {sorted(_DISTILL_FIELDS)} "
                         f"or TrainConfig {sorted(_TRAIN_FIELDS)}")
    d_kw = {k: v for k, v in settings.items() if k in _DISTILL_FIELDS}
    if losses is not None:
        d_kw["losses"] = losses
    cfg = dataclasses.replace(config or DistillConfig(), **d_kw)
    if step is not None:
        _check_step(step, teacher, cfg)
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
    cache = cfg.cache_teacher and augment is None and step is None
    criterion = DistillationLoss(student, teacher, cfg, loader.dataset, cache_teacher=cache)
    step_fn = _fit_step(step, teacher, criterion) if step is not None else None  # type: ignore[arg-type]
    return fit(student, loader, test_loader, tcfg, loss_fn=criterion, augment=augment, step_fn=step_fn)


def _check_step(step: Any, teacher: nn.Module | None, cfg: DistillConfig) -> None:
    """A ValueError naming what a :data:`DistillStep` cannot do with this configuration."""
    if not callable(step):
        raise ValueError(f"step={step!r} is not valid; give a function like distill_step")
    other = sorted(k for k, w in cfg.losses.items() if w > 0 and k not in STEP_TERMS)
    if other:
        raise ValueError(f"a step computes {list(STEP_TERMS)} only; losses {other} need the objective (step=None)")
    if teacher is None:
        raise ValueError("a distillation step needs a teacher; pass teacher= or use step=None")
    if cfg.losses.get("hint", 0) > 0 and [tuple(p) for p in cfg.hint_layers] != [(FEATURES, FEATURES)]:
        raise ValueError(f"a step's hint matches the penultimate features only; hint_layers={list(cfg.hint_layers)} "
                         "needs the objective (step=None)")
