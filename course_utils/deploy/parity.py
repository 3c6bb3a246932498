"""Does the deployed artifact compute what the PyTorch model computes? Numbers, and a clear error when not.

fp32 artifacts must match closely (max abs logit difference, cosine ~1, same predictions); int8 artifacts are
judged by output cosine, prediction agreement and the accuracy they lose, never by exact equality.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import DeploymentMismatchError
from .runners import Runner


@dataclass(frozen=True)
class Tolerance:
    """How far a deployment may stray: minimum mean output cosine and argmax agreement, and optionally a maximum
    absolute logit difference and a maximum accuracy drop (as a fraction, 0.005 = half a point)."""

    min_cosine: float
    min_agreement: float
    max_abs: float | None = None
    max_accuracy_drop: float | None = None


#: Default tolerance per precision family: fp32 must match; int8 must agree.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(min_cosine=0.9999, min_agreement=0.99, max_abs=1e-3),
    "int8": Tolerance(min_cosine=0.99, min_agreement=0.95, max_accuracy_drop=0.02),
}


def tolerance_for(precision: str) -> Tolerance:
    """The default :class:`Tolerance` for ``precision`` (every ``int8_*`` precision counts as int8)."""
    return TOLERANCES["fp32" if precision == "fp32" else "int8"]


@dataclass
class ParityReport:
    """How a deployment compares with its reference on ``n`` images (accuracies when labels were given)."""

    name: str
    n: int
    max_abs_diff: float
    cosine: float
    agreement: float
    accuracy: float | None
    reference_accuracy: float | None
    tolerance: Tolerance

    @property
    def accuracy_drop(self) -> float | None:
        """Reference accuracy minus deployed accuracy (a fraction; positive = the deployment lost accuracy)."""
        if self.accuracy is None or self.reference_accuracy is None:
            return None
        return self.reference_accuracy - self.accuracy

    def problems(self) -> list[str]:
        """Every way this report breaks its tolerance (empty when it passes)."""
        t, out = self.tolerance, []
        if not self.cosine >= t.min_cosine:
            out.append(f"output cosine {self.cosine:.5f} < {t.min_cosine}")
        if not self.agreement >= t.min_agreement:
            out.append(f"argmax agreement {self.agreement:.4f} < {t.min_agreement}")
        if t.max_abs is not None and not self.max_abs_diff <= t.max_abs:
            out.append(f"max |logit difference| {self.max_abs_diff:.2e} > {t.max_abs:g}")
        drop = self.accuracy_drop
        if t.max_accuracy_drop is not None and drop is not None and drop > t.max_accuracy_drop:
            out.append(f"accuracy drop {100 * drop:.2f} points > {100 * t.max_accuracy_drop:.2f}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def as_dict(self) -> dict[str, Any]:
        """Flat numbers for a table row (the tolerance left out)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("tolerance", "name")}
        d["accuracy_drop"] = self.accuracy_drop
        d["parity_ok"] = self.ok
        return d


def _inputs_and_labels(data: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        x, y = data, labels
    else:  # a DataLoader or an iterable of (images, labels) pairs / image batches
        xs, ys = [], []
        for item in data:
            if isinstance(item, (tuple, list)):
                xs.append(item[0])
                if len(item) > 1:
                    ys.append(item[1])
            else:
                xs.append(item)
        if not xs:
            raise ValueError("the parity data is empty: give at least one image")
        x = torch.cat(xs)
        y = labels if labels is not None else (torch.cat(ys) if len(ys) == len(xs) else None)
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"parity data must be images (N, C, H, W) with N >= 1; got shape {tuple(x.shape)}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{len(y)} labels for {len(x)} images")
    return x.float(), y


def reference_logits(reference: nn.Module | torch.Tensor, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of the PyTorch reference on ``x`` (or ``reference`` itself when it already is a logit tensor)."""
    if isinstance(reference, torch.Tensor):
        return reference.float()
    reference.eval()
    with torch.no_grad():
        return torch.cat([reference(x[i:i + batch_size]).float() for i in range(0, len(x), batch_size)])


def check_parity(runner: Runner, reference: nn.Module | torch.Tensor, data: Any, labels: Any = None,
                 tolerance: Tolerance | None = None, raise_on_mismatch: bool = True,
                 batch_size: int = 256) -> ParityReport:
    """Compare ``runner`` with the PyTorch ``reference`` (a model, or its logits on ``data``) on ``data``: images
    ``(N, C, H, W)``, a DataLoader or ``(images, labels)`` batches (e.g. the test loader).

    Reports the max abs logit difference, the mean output cosine, argmax agreement and, with labels, both
    accuracies. ``tolerance`` defaults to the one for the runner's precision; a mismatch raises
    :class:`DeploymentMismatchError` (or only marks the report when ``raise_on_mismatch=False``).
    """
    x, y = _inputs_and_labels(data, labels)
    ref = reference_logits(reference, x, batch_size)
    got = torch.from_numpy(runner.predict(x, batch_size=batch_size)).float()
    if got.shape != ref.shape:
        raise DeploymentMismatchError(f"{runner.name} returns logits of shape {tuple(got.shape)}, "
                                      f"the PyTorch model {tuple(ref.shape)}")
    finite = bool(torch.isfinite(got).all())
    report = ParityReport(
        name=runner.name, n=len(x),
        max_abs_diff=(got - ref).abs().max().item() if finite else float("inf"),
        cosine=F.cosine_similarity(got, ref, dim=1).mean().item() if finite else float("nan"),
        agreement=(got.argmax(1) == ref.argmax(1)).float().mean().item(),
        accuracy=None if y is None else (got.argmax(1) == y).float().mean().item(),
        reference_accuracy=None if y is None else (ref.argmax(1) == y).float().mean().item(),
        tolerance=tolerance or tolerance_for(runner.precision))
    runner.parity = report
    if raise_on_mismatch and not report.ok:
        raise DeploymentMismatchError(f"{runner.name} disagrees with the PyTorch model on {report.n} images: "
                                      + "; ".join(report.problems())
                                      + ". Pass a looser tolerance=Tolerance(...) if this is expected.")
    return report
