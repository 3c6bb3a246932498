"""Distillation losses: logit KD, FitNets hints, CRD and in-batch InfoNCE.

- Logit KD (Hinton, Vinyals & Dean 2015): ``KL(softmax(t/T) || softmax(s/T)) * T^2`` with batchmean reduction,
  mixed with cross-entropy as ``kd_weight * L_soft + (1 - kd_weight) * CE``.
- FitNets hints (Romero et al. 2015): a learned regressor maps a student feature to the teacher feature's width;
  the loss is the mean squared error.
- CRD (Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020): linear embedding heads with
  L2 normalization, a memory bank of negatives per training example updated with momentum, and the NCE loss of the
  paper's reference code (RepDistiller). ``info_nce_loss`` is an in-batch variant without a memory bank.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..args import check_int, check_number


def _check_kd_weight(kd_weight: float) -> None:
    check_number("kd_weight", kd_weight, 0.0, 1.0)


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if student_logits.ndim != 2 or teacher_logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (batch, classes); got student {tuple(student_logits.shape)} "
                         f"and teacher {tuple(teacher_logits.shape)}")
    if student_logits.shape[1] != teacher_logits.shape[1]:
        raise ValueError(f"student has {student_logits.shape[1]} classes but teacher has {teacher_logits.shape[1]}; "
                         "distillation needs the same classes")
    if student_logits.shape[0] != teacher_logits.shape[0]:
        raise ValueError(f"batch sizes differ: student {student_logits.shape[0]}, teacher {teacher_logits.shape[0]}")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton's soft loss: ``KL(log_softmax(s/T), softmax(t/T), batchmean) * T^2``.

    The ``T^2`` factor keeps the gradient magnitude comparable across temperatures.
    """
    check_number("temperature", temperature, 0.0, low_open=True)
    _check_logits(student_logits, teacher_logits)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature ** 2


def kd_objective(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                 temperature: float = 4.0, kd_weight: float = 0.9) -> torch.Tensor:
    """``kd_weight * kd_loss + (1 - kd_weight) * cross_entropy(student, targets)``."""
    _check_kd_weight(kd_weight)
    soft = kd_loss(student_logits, teacher_logits, temperature)
    return kd_weight * soft + (1.0 - kd_weight) * F.cross_entropy(student_logits, targets)


def kd_weights(kd_weight: float = 0.9) -> dict[str, float]:
    """Loss weights for :func:`distill` that give ``kd_weight * L_soft + (1 - kd_weight) * CE``."""
    _check_kd_weight(kd_weight)
    return {"ce": 1.0 - kd_weight, "kd": float(kd_weight)}


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
        check_int("n_data", n_data, 2)
        check_int("negatives", negatives, 1)
        check_number("temperature", temperature, 0.0, low_open=True)
        check_number("momentum", momentum, 0.0, 1.0, high_open=True)
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
    check_number("temperature", temperature, 0.0, low_open=True)
    logits = emb_student @ emb_teacher.t() / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


class InfoNCELoss(nn.Module):
    """Embed heads plus :func:`info_nce_loss` (no memory bank: negatives are the other batch examples)."""

    def __init__(self, student_dim: int, teacher_dim: int, dim: int = 128, temperature: float = 0.07) -> None:
        super().__init__()
        check_number("temperature", temperature, 0.0, low_open=True)
        self.embed_student = Embed(student_dim, dim)
        self.embed_teacher = Embed(teacher_dim, dim)
        self.temperature = temperature

    def forward(self, feat_student: torch.Tensor, feat_teacher: torch.Tensor) -> torch.Tensor:
        return info_nce_loss(self.embed_student(feat_student), self.embed_teacher(feat_teacher.detach()),
                             self.temperature)
