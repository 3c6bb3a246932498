"""Knowledge distillation: logit KD, FitNets feature hints, CRD, and a training loop that mixes them.

- Logit KD (Hinton, Vinyals & Dean 2015): ``KL(softmax(t/T) || softmax(s/T)) * T^2`` with batchmean reduction,
  mixed with cross-entropy as ``alpha * L_soft + (1 - alpha) * CE``.
- FitNets hints (Romero et al. 2015): a learned regressor maps a student feature to the teacher feature's
  shape; the loss is the mean squared error. Which layers are matched is a parameter.
- CRD (Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020): linear embedding heads
  with L2 normalization, a memory bank of negatives per training example updated with momentum, and the NCE
  loss of the paper's reference code (RepDistiller). ``info_nce_loss`` is an in-batch variant.

Layer names: ``"features"`` is the input of the model's ``head`` (the penultimate feature, what
``ViT.features(x)`` returns); any other name is a submodule (e.g. ``"blocks.1"``) whose output is captured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .train import History, evaluate, get_device, make_optimizer, show_progress

#: Loss terms the training loop understands (weights are given per term).
LOSS_TERMS = ("ce", "kd", "hint", "crd", "infonce")
#: Name of the penultimate feature (input of ``head``).
FEATURES = "features"


# ------------------------------------------------------------------------------------------------ checks

def _check_temperature(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or math.isinf(value):
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number > 0")


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} is not valid; it must be in [0, 1]")


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if student_logits.ndim != 2 or teacher_logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (batch, classes); got student {tuple(student_logits.shape)} "
                         f"and teacher {tuple(teacher_logits.shape)}")
    if student_logits.shape[1] != teacher_logits.shape[1]:
        raise ValueError(f"student has {student_logits.shape[1]} classes but teacher has {teacher_logits.shape[1]}; "
                         "distillation needs the same classes")
    if student_logits.shape[0] != teacher_logits.shape[0]:
        raise ValueError(f"batch sizes differ: student {student_logits.shape[0]}, teacher {teacher_logits.shape[0]}")


# ------------------------------------------------------------------------------------------------ logit KD

def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton's soft loss: ``KL(log_softmax(s/T), softmax(t/T), batchmean) * T^2``.

    The ``T^2`` factor keeps the gradient magnitude comparable across temperatures.
    """
    _check_temperature("temperature", temperature)
    _check_logits(student_logits, teacher_logits)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature ** 2


def kd_objective(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                 temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """``alpha * kd_loss + (1 - alpha) * cross_entropy(student, targets)``."""
    _check_alpha(alpha)
    soft = kd_loss(student_logits, teacher_logits, temperature)
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, targets)


def kd_weights(alpha: float = 0.9) -> dict[str, float]:
    """Loss weights for :func:`distill` that give ``alpha * L_soft + (1 - alpha) * CE``."""
    _check_alpha(alpha)
    return {"ce": 1.0 - alpha, "kd": float(alpha)}


# ------------------------------------------------------------------------------------------------ features

def _module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        some = [n for n in modules if n and n.count(".") <= 1][:12]
        raise ValueError(f"layer {name!r} is not a submodule of {type(model).__name__}; try {FEATURES!r} or one "
                         f"of {some}")
    return modules[name]


def forward_with_features(model: nn.Module, x: torch.Tensor,
                          layers: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model(x)`` and capture the named layers' outputs with forward hooks.

    ``"features"`` captures the input of ``model.head`` (the penultimate feature).
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in dict.fromkeys(layers):
            if name == FEATURES:
                head = getattr(model, "head", None)
                if not isinstance(head, nn.Module):
                    raise ValueError(f"layer {FEATURES!r} needs a model with a `head` module; "
                                     f"{type(model).__name__} has none")
                handles.append(head.register_forward_pre_hook(
                    lambda m, args, n=name: captured.__setitem__(n, args[0])))
            else:
                handles.append(_module(model, name).register_forward_hook(
                    lambda m, args, out, n=name: captured.__setitem__(n, out)))
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, captured


class HintRegressor(nn.Module):
    """FitNets regressor: a Linear on the last dimension mapping the student feature to the teacher's width."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def hint_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, regressor: nn.Module) -> torch.Tensor:
    """FitNets hint: ``MSE(regressor(student_feature), teacher_feature)`` (the teacher side gets no gradient)."""
    mapped = regressor(student_feature)
    if mapped.shape != teacher_feature.shape:
        raise ValueError(f"regressed student feature {tuple(mapped.shape)} does not match the teacher feature "
                         f"{tuple(teacher_feature.shape)}; match layers with the same token/batch layout")
    return F.mse_loss(mapped, teacher_feature.detach())


# ------------------------------------------------------------------------------------------------ CRD

class Embed(nn.Module):
    """CRD embedding head: ``Linear(dim, out_dim)`` then L2 normalization."""

    def __init__(self, dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


class ContrastMemory(nn.Module):
    """Memory bank of one student and one teacher embedding per training example (CRD).

    For each anchor, ``negatives`` random indices are drawn (uniformly) beside the example's own index
    (column 0, the positive). Teacher embeddings are scored against the student bank and vice versa:
    ``exp(<v, m> / T) / Z`` with ``Z`` fixed from the first batch, as in the reference code. After scoring,
    the anchors' rows are updated: ``m <- normalize(momentum * m + (1 - momentum) * v)``.
    """

    def __init__(self, dim: int, n_data: int, negatives: int = 4096, temperature: float = 0.07,
                 momentum: float = 0.5) -> None:
        super().__init__()
        if not isinstance(n_data, int) or n_data < 2:
            raise ValueError(f"n_data={n_data!r} is not valid; it must be an integer >= 2")
        if not isinstance(negatives, int) or negatives < 1:
            raise ValueError(f"negatives={negatives!r} is not valid; it must be an integer >= 1")
        _check_temperature("temperature", temperature)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r} is not valid; it must be in [0, 1)")
        self.n_data, self.negatives, self.temperature, self.momentum = n_data, negatives, temperature, momentum
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_student", torch.rand(n_data, dim) * 2 * bound - bound)
        self.register_buffer("memory_teacher", torch.rand(n_data, dim) * 2 * bound - bound)
        self.register_buffer("z_student", torch.tensor(-1.0))
        self.register_buffer("z_teacher", torch.tensor(-1.0))

    def sample(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices ``(B, 1 + negatives)``: the positive ``idx`` then uniform random negatives."""
        neg = torch.randint(0, self.n_data, (idx.shape[0], self.negatives), device=idx.device)
        return torch.cat([idx.view(-1, 1), neg], dim=1)

    def forward(self, emb_student: torch.Tensor, emb_teacher: torch.Tensor, idx: torch.Tensor,
                contrast_idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(out_student, out_teacher)``, each ``(B, 1 + K)``; updates the memory when training."""
        if idx.min() < 0 or idx.max() >= self.n_data:
            raise ValueError(f"idx must lie in [0, {self.n_data}); got [{int(idx.min())}, {int(idx.max())}]")
        if contrast_idx is None:
            contrast_idx = self.sample(idx)
        # student anchors against teacher memory, teacher anchors against student memory. Scoring every anchor
        # against the whole bank with one matrix product and then picking the sampled columns gives the same
        # numbers as gathering (B, 1 + K, D) rows and a batched product, and is much faster on a CPU.
        # (The banks are cloned because the update below changes them in place before backward runs.)
        dots_s = (emb_student @ self.memory_teacher.clone().t()).gather(1, contrast_idx)
        dots_t = (emb_teacher @ self.memory_student.clone().t()).gather(1, contrast_idx)
        out_s = torch.exp(dots_s / self.temperature)
        out_t = torch.exp(dots_t / self.temperature)
        if self.z_student < 0:
            self.z_student.fill_(out_s.mean().item() * self.n_data)
        if self.z_teacher < 0:
            self.z_teacher.fill_(out_t.mean().item() * self.n_data)
        out_s, out_t = out_s / self.z_student, out_t / self.z_teacher
        if self.training:
            self.update(emb_student, emb_teacher, idx)
        return out_s, out_t

    @torch.no_grad()
    def update(self, emb_student: torch.Tensor, emb_teacher: torch.Tensor, idx: torch.Tensor) -> None:
        """Momentum update of the anchors' rows, re-normalized to unit length."""
        for bank, emb in ((self.memory_student, emb_student), (self.memory_teacher, emb_teacher)):
            row = bank[idx] * self.momentum + emb.detach() * (1.0 - self.momentum)
            bank.index_copy_(0, idx, F.normalize(row, dim=1))


def nce_loss(scores: torch.Tensor, n_data: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE loss on ``(B, 1 + K)`` scores (column 0 positive), noise distribution uniform ``1/n_data``.

    ``-mean_b [log(P_pos / (P_pos + K/N)) + sum_k log((K/N) / (P_neg_k + K/N))]``.
    """
    k = scores.shape[1] - 1
    noise = k / n_data
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + eps))
    log_d0 = torch.log(noise / (neg + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


class CRDLoss(nn.Module):
    """Contrastive representation distillation: embed heads, memory bank and the two NCE terms summed."""

    def __init__(self, student_dim: int, teacher_dim: int, n_data: int, dim: int = 128, negatives: int = 4096,
                 temperature: float = 0.07, momentum: float = 0.5) -> None:
        super().__init__()
        self.embed_student = Embed(student_dim, dim)
        self.embed_teacher = Embed(teacher_dim, dim)
        self.memory = ContrastMemory(dim, n_data, negatives, temperature, momentum)

    def forward(self, feat_student: torch.Tensor, feat_teacher: torch.Tensor, idx: torch.Tensor,
                contrast_idx: torch.Tensor | None = None) -> torch.Tensor:
        es, et = self.embed_student(feat_student), self.embed_teacher(feat_teacher.detach())
        out_s, out_t = self.memory(es, et, idx, contrast_idx)
        return nce_loss(out_s, self.memory.n_data) + nce_loss(out_t, self.memory.n_data)


def info_nce_loss(emb_student: torch.Tensor, emb_teacher: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """In-batch InfoNCE: each student embedding must pick its own teacher embedding among the batch."""
    _check_temperature("temperature", temperature)
    logits = emb_student @ emb_teacher.t() / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


class InfoNCELoss(nn.Module):
    """Embed heads plus :func:`info_nce_loss` (no memory bank: negatives are the other batch examples)."""

    def __init__(self, student_dim: int, teacher_dim: int, dim: int = 128, temperature: float = 0.07) -> None:
        super().__init__()
        _check_temperature("temperature", temperature)
        self.embed_student = Embed(student_dim, dim)
        self.embed_teacher = Embed(teacher_dim, dim)
        self.temperature = temperature

    def forward(self, feat_student: torch.Tensor, feat_teacher: torch.Tensor) -> torch.Tensor:
        return info_nce_loss(self.embed_student(feat_student), self.embed_teacher(feat_teacher.detach()),
                             self.temperature)


# ------------------------------------------------------------------------------------------------ data

class IndexedDataset(Dataset):
    """Wrap a dataset so items are ``(x, y, index)``: CRD's memory bank needs each example's index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        return x, y, i


def with_indices(loader: DataLoader, seed: int = 0, shuffle: bool = True) -> DataLoader:
    """A loader over the same dataset and batch size that also yields the example indices."""
    return DataLoader(IndexedDataset(loader.dataset), batch_size=loader.batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, dataset: Dataset, layers: Sequence[str] = (), batch_size: int = 256,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and captured layers of a frozen teacher for every example of ``dataset``, in index order.

    Without data augmentation the teacher's outputs never change, so the loop can compute them once.
    """
    teacher.eval()
    # own generator: iterating a loader would otherwise draw from (and shift) the global RNG
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    logits, feats = [], {n: [] for n in layers}
    for batch in loader:
        lg, fs = forward_with_features(teacher, batch[0].to(device), layers)
        logits.append(lg.float())
        for n in layers:
            feats[n].append(fs[n].float())
    return torch.cat(logits), {n: torch.cat(v) for n, v in feats.items()}


# ------------------------------------------------------------------------------------------------ loss + loop

def check_weights(losses: Mapping[str, float]) -> dict[str, float]:
    """Validate a ``{term: weight}`` mapping (terms from ``LOSS_TERMS``, weights >= 0, not all zero)."""
    if not isinstance(losses, Mapping) or not losses:
        raise ValueError(f"losses={losses!r} is not valid; give a non-empty mapping of {list(LOSS_TERMS)} to weights")
    out = {}
    for k, w in losses.items():
        if k not in LOSS_TERMS:
            raise ValueError(f"loss term {k!r} is not valid; choose from {list(LOSS_TERMS)}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0 or math.isinf(w):
            raise ValueError(f"weight of {k!r} = {w!r} is not valid; it must be a finite number >= 0")
        out[k] = float(w)
    if not any(out.values()):
        raise ValueError(f"losses={losses!r} has only zero weights; nothing to train")
    return out


class DistillationLoss(nn.Module):
    """Weighted sum of the distillation terms; holds the learnable parts (hint regressors, CRD heads).

    ``forward`` returns ``(total, {term: value})`` with unweighted term values.
    """

    def __init__(self, losses: Mapping[str, float], student_shapes: Mapping[str, torch.Size],
                 teacher_shapes: Mapping[str, torch.Size], n_data: int, temperature: float = 4.0,
                 hint_layers: Sequence[tuple[str, str]] = ((FEATURES, FEATURES),), crd_dim: int = 128,
                 crd_negatives: int = 4096, crd_temperature: float = 0.07, crd_momentum: float = 0.5) -> None:
        super().__init__()
        self.weights = {k: w for k, w in check_weights(losses).items() if w > 0}
        _check_temperature("temperature", temperature)
        self.temperature = temperature
        self.hint_layers = [tuple(p) for p in hint_layers] if "hint" in self.weights else []
        self.regressors = nn.ModuleList(HintRegressor(student_shapes[s][-1], teacher_shapes[t][-1])
                                        for s, t in self.hint_layers)
        s_dim, t_dim = (student_shapes.get(FEATURES), teacher_shapes.get(FEATURES))
        self.crd = (CRDLoss(s_dim[-1], t_dim[-1], n_data, crd_dim, min(crd_negatives, n_data), crd_temperature,
                            crd_momentum) if "crd" in self.weights else None)
        self.infonce = (InfoNCELoss(s_dim[-1], t_dim[-1], crd_dim, crd_temperature)
                        if "infonce" in self.weights else None)

    @staticmethod
    def layers(losses: Mapping[str, float], hint_layers: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
        """Student and teacher layers the terms need."""
        s, t = [], []
        if losses.get("hint", 0) > 0:
            s += [p[0] for p in hint_layers]
            t += [p[1] for p in hint_layers]
        if losses.get("crd", 0) > 0 or losses.get("infonce", 0) > 0:
            s.append(FEATURES)
            t.append(FEATURES)
        return list(dict.fromkeys(s)), list(dict.fromkeys(t))

    def forward(self, s_logits: torch.Tensor, s_feats: Mapping[str, torch.Tensor], t_logits: torch.Tensor | None,
                t_feats: Mapping[str, torch.Tensor], y: torch.Tensor,
                idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms: dict[str, torch.Tensor] = {}
        if "ce" in self.weights:
            terms["ce"] = F.cross_entropy(s_logits, y)
        if "kd" in self.weights:
            terms["kd"] = kd_loss(s_logits, t_logits, self.temperature)
        if self.hint_layers:
            terms["hint"] = sum(hint_loss(s_feats[s], t_feats[t], reg)
                                for (s, t), reg in zip(self.hint_layers, self.regressors)) / len(self.hint_layers)
        if self.crd is not None:
            terms["crd"] = self.crd(s_feats[FEATURES], t_feats[FEATURES], idx)
        if self.infonce is not None:
            terms["infonce"] = self.infonce(s_feats[FEATURES], t_feats[FEATURES])
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, terms


def _num_classes(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    return getattr(head, "out_features", None)


def distill(student: nn.Module, teacher: nn.Module | None, train_loader: DataLoader,
            test_loader: DataLoader | None = None, losses: Mapping[str, float] | None = None, *,
            temperature: float = 4.0, hint_layers: Sequence[tuple[str, str]] = ((FEATURES, FEATURES),),
            crd_dim: int = 128, crd_negatives: int = 4096, crd_temperature: float = 0.07,
            crd_momentum: float = 0.5, epochs: int = 10, lr: float = 2e-3, weight_decay: float = 0.05,
            warmup_fraction: float = 0.05, device: str | torch.device = "cpu", seed: int = 0,
            cache_teacher: bool = True, eval_every: int = 1, progress: bool = True, desc: str = "distill",
            grad_clip: float | None = None,
            augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> History:
    """Train ``student`` on a weighted sum of loss terms from a frozen ``teacher``; returns the per-epoch history.

    ``losses`` maps terms of ``LOSS_TERMS`` to weights (default ``kd_weights(0.9)``); ``{"ce": 1}`` with
    ``teacher=None`` trains from scratch on the same loop and schedule. The teacher stays in eval mode with
    ``requires_grad`` off; with ``cache_teacher`` its outputs are computed once per dataset (valid because the
    loaders apply no random augmentation). AdamW with warm-up + cosine, as ``course_utils.train.fit``.
    History keys: ``epoch, lr, train_loss, train_acc, loss_<term>`` per term, and ``test_loss, test_acc``
    every ``eval_every`` epochs and at the last epoch (``test_epoch`` says which).
    ``grad_clip`` clips the global gradient norm; ``augment(x)`` transforms each training batch (then the teacher
    runs on the augmented batch and nothing is cached).
    """
    losses = check_weights(losses if losses is not None else kd_weights(0.9))
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} is not valid; it must be an integer >= 1")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} is not valid; it must be > 0")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip={grad_clip!r} is not valid; it must be > 0 or None")
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every={eval_every!r} is not valid; it must be an integer >= 1")
    needs_teacher = any(w > 0 for k, w in losses.items() if k != "ce")
    if needs_teacher and teacher is None:
        raise ValueError(f"losses={losses} need a teacher; pass teacher= or use {{'ce': 1.0}} only")
    if teacher is not None and _num_classes(teacher) is not None and _num_classes(student) is not None \
            and _num_classes(teacher) != _num_classes(student):
        raise ValueError(f"student has {_num_classes(student)} classes but teacher has {_num_classes(teacher)}; "
                         "distillation needs the same classes")
    with torch.enable_grad():  # training needs autograd even when distill() is called inside a no_grad block
        return _train(student, teacher, train_loader, test_loader, losses, needs_teacher, temperature, hint_layers,
                      crd_dim, crd_negatives, crd_temperature, crd_momentum, epochs, lr, weight_decay,
                      warmup_fraction, get_device(device), seed, cache_teacher and augment is None, eval_every,
                      progress, desc, grad_clip, augment)


def _train(student: nn.Module, teacher: nn.Module | None, train_loader: DataLoader, test_loader: DataLoader | None,
           losses: dict[str, float], needs_teacher: bool, temperature: float, hint_layers: Sequence[tuple[str, str]],
           crd_dim: int, crd_negatives: int, crd_temperature: float, crd_momentum: float, epochs: int, lr: float,
           weight_decay: float, warmup_fraction: float, device: torch.device, seed: int, cache_teacher: bool,
           eval_every: int, progress: bool, desc: str, grad_clip: float | None,
           augment: Callable[[torch.Tensor], torch.Tensor] | None) -> History:
    """The loop behind :func:`distill` (arguments already validated)."""
    student.to(device)
    s_layers, t_layers = DistillationLoss.layers(losses, hint_layers)
    loader = with_indices(train_loader, seed=seed)
    n_data = len(loader.dataset)

    cache = None
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if cache_teacher and needs_teacher:
            cache = teacher_outputs(teacher, loader.dataset, t_layers, device=device)

    # shapes of the matched layers, from one example
    x0 = loader.dataset[0][0].unsqueeze(0).to(device)
    with torch.no_grad():
        was_training = student.training
        student.eval()
        _, s0 = forward_with_features(student, x0, s_layers)
        student.train(was_training)
        t0 = forward_with_features(teacher, x0, t_layers)[1] if teacher is not None else {}
    criterion = DistillationLoss(losses, {k: v.shape for k, v in s0.items()}, {k: v.shape for k, v in t0.items()},
                                 n_data, temperature, hint_layers, crd_dim, crd_negatives, crd_temperature,
                                 crd_momentum).to(device)

    trainable = [p for p in student.parameters() if p.requires_grad] + list(criterion.parameters())
    opt, sched = make_optimizer(trainable, lr, weight_decay, epochs * len(loader), warmup_fraction)
    history: History = {}
    bar = tqdm(range(epochs), desc=desc, disable=not show_progress(progress), unit="epoch")
    for epoch in bar:
        student.train()
        criterion.train()
        seen, correct, loss_sum = 0, 0, 0.0
        term_sums: dict[str, float] = {}
        for x, y, idx in loader:
            x, y, idx = x.to(device), y.to(device), idx.to(device)
            if augment is not None:
                x = augment(x)
            s_logits, s_feats = forward_with_features(student, x, s_layers)
            if cache is not None:
                t_logits, t_feats = cache[0][idx], {k: v[idx] for k, v in cache[1].items()}
            elif needs_teacher:
                with torch.no_grad():
                    t_logits, t_feats = forward_with_features(teacher, x, t_layers)
            else:
                t_logits, t_feats = None, {}
            loss, terms = criterion(s_logits, s_feats, t_logits, t_feats, y, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(trainable, grad_clip)
            opt.step()
            sched.step()
            n = len(y)
            seen += n
            loss_sum += loss.item() * n
            correct += (s_logits.argmax(1) == y).sum().item()
            for k, v in terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + v.item() * n
        record: dict[str, float] = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                                    "train_loss": loss_sum / seen, "train_acc": correct / seen}
        record.update({f"loss_{k}": v / seen for k, v in term_sums.items()})
        for k, v in record.items():
            history.setdefault(k, []).append(v)
        if test_loader is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            ev = evaluate(student, test_loader, device)
            for k, v in (("test_epoch", epoch + 1), ("test_loss", ev["loss"]), ("test_acc", ev["accuracy"])):
                history.setdefault(k, []).append(v)
            bar.set_postfix(loss=round(record["train_loss"], 4), test_acc=round(ev["accuracy"], 4))
    student.eval()
    return history


# ------------------------------------------------------------------------------------------------ evaluation

def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two feature matrices ``(n, d1)``, ``(n, d2)``.

    It is the cosine similarity of the two centered Gram matrices, so the widths may differ.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"features must be (n, d) with the same n; got {tuple(a.shape)} and {tuple(b.shape)}")
    a = (a - a.mean(0)).double()
    b = (b - b.mean(0)).double()
    num = (a.t() @ b).pow(2).sum()
    den = (a.t() @ a).pow(2).sum().sqrt() * (b.t() @ b).pow(2).sum().sqrt()
    return (num / den).item()


@torch.no_grad()
def logits_and_features(model: nn.Module, loader: DataLoader,
                        device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, penultimate features and labels of ``model`` over ``loader``."""
    model.eval()
    ls, fs, ys = [], [], []
    for x, y, *_ in loader:
        lg, f = forward_with_features(model, x.to(device), [FEATURES])
        ls.append(lg.float().cpu())
        fs.append(f[FEATURES].float().cpu().flatten(1))
        ys.append(y)
    return torch.cat(ls), torch.cat(fs), torch.cat(ys)


def compare_to_teacher(student: nn.Module, teacher: nn.Module, loader: DataLoader,
                       device: str | torch.device = "cpu") -> dict[str, float]:
    """Student accuracy plus agreement with the teacher's predictions, logit cosine similarity and feature CKA."""
    s_logits, s_feat, y = logits_and_features(student, loader, device)
    t_logits, t_feat, _ = logits_and_features(teacher, loader, device)
    _check_logits(s_logits, t_logits)
    return {
        "accuracy": (s_logits.argmax(1) == y).float().mean().item(),
        "agreement": (s_logits.argmax(1) == t_logits.argmax(1)).float().mean().item(),
        "logit_cosine": F.cosine_similarity(s_logits, t_logits, dim=1).mean().item(),
        "feature_cka": linear_cka(s_feat, t_feat),
    }
