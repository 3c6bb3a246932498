"""Low-rank factorization: replace a Linear by two thinner ones from its truncated SVD (Eckart-Young)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..modules import clone_model, effective_weight, replace_modules
from .unstructured import prunable_layers


class LowRankLinear(nn.Module):
    """``up(down(x))``: a rank-``r`` factorization of a Linear (``down``: in -> r, no bias; ``up``: r -> out)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def choose_rank(singular_values: torch.Tensor, rank: int | None = None, energy: float | None = None) -> int:
    """``rank`` (capped at the full rank), or the smallest rank keeping ``energy`` of the squared singular values."""
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank= (an integer >= 1) or energy= (a fraction in (0, 1])")
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank={rank!r} is not valid; it must be an integer >= 1")
        return min(rank, singular_values.numel())
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0 < energy <= 1:
        raise ValueError(f"energy={energy!r} is not valid; it must be a number in (0, 1]")
    e = singular_values.double() ** 2
    cum = torch.cumsum(e, 0) / e.sum()
    return min(int(torch.searchsorted(cum, torch.tensor(energy - 1e-12, dtype=cum.dtype))) + 1, e.numel())


def factorize_linear(linear: nn.Linear, rank: int | None = None, energy: float | None = None) -> LowRankLinear:
    """Truncated SVD ``W ~ U_r S_r V_r^T``: ``down = sqrt(S_r) V_r^T``, ``up = U_r sqrt(S_r)``, bias kept."""
    w = effective_weight(linear).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    r = choose_rank(s, rank, energy)
    root = s[:r].sqrt()
    new = LowRankLinear(linear.in_features, linear.out_features, r, bias=linear.bias is not None)
    with torch.no_grad():
        new.down.weight.copy_(root[:, None] * vh[:r])
        new.up.weight.copy_(u[:, :r] * root[None, :])
        if linear.bias is not None:
            new.up.bias.copy_(effective_weight(linear, "bias"))
    return new.to(linear.weight.device if isinstance(linear.weight, torch.Tensor) else "cpu")


def low_rank_factorize(model: nn.Module, rank: int | None = None, energy: float | None = None,
                       layers: Iterable[str] | None = None, only_if_smaller: bool = True) -> nn.Module:
    """A copy of ``model`` with each ``nn.Linear`` (or those named in ``layers``) replaced by a LowRankLinear.

    With ``only_if_smaller`` a layer stays dense when ``r * (in + out) >= in * out`` (no saving).
    """
    new = clone_model(model)
    targets = prunable_layers(new, layers, types=(nn.Linear,))
    wrong = {n: type(m).__name__ for n, m in targets.items() if not isinstance(m, nn.Linear)}
    if wrong:
        raise ValueError(f"layers {wrong} are not nn.Linear layers; low rank factorizes Linear layers only")

    def factorize(lin: nn.Linear, fqn: str) -> nn.Module:
        fact = factorize_linear(lin, rank, energy)
        smaller = fact.rank * (lin.in_features + lin.out_features) < lin.in_features * lin.out_features
        return fact if smaller or not only_if_smaller else lin

    return replace_modules(new, factorize, list(targets))


def low_rank_layers(model: nn.Module) -> dict[str, LowRankLinear]:
    """Every LowRankLinear of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LowRankLinear)}
