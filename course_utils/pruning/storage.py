"""What unstructured sparsity costs on disk: the state dict in sparse formats (COO, CSR, bitmask).

A pruned model saved as is stores every zero (and, before ``make_permanent``, the masks too). To save bytes the
zeros must be left out of the file: COO stores two int64 indices per non-zero, CSR one column index per non-zero
plus row pointers, a bitmask one bit per entry plus the non-zero values.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..args import check_choice
from ..metrics import size_on_disk
from ..modules import clone_model

SPARSE_FORMATS = ("coo", "csr", "bitmask")


def _dense_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return clone_model(model, fold=True).state_dict()


def sparse_state_dict(model: nn.Module, fmt: str = "csr") -> dict[str, Any]:
    """The state dict with every matrix/filter (>= 2 dims) stored sparsely when that is smaller.

    ``"coo"``/``"csr"``: torch sparse tensors (int64 indices); ``"bitmask"``: one bit per entry plus the
    non-zero values, ``{"shape", "bits", "values"}``.
    """
    check_choice("fmt", fmt, SPARSE_FORMATS)
    out: dict[str, Any] = {}
    for k, t in _dense_state(model).items():
        if t.dim() < 2 or not t.is_floating_point():
            out[k] = t
            continue
        if fmt == "coo":
            s: Any = t.to_sparse().coalesce()
            nbytes = s.values().numel() * (t.element_size() + 8 * t.dim())
        elif fmt == "csr":
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                c = t.reshape(t.shape[0], -1).to_sparse_csr()  # clone: to_sparse_csr over-allocates col_indices
                s = torch.sparse_csr_tensor(c.crow_indices().clone(), c.col_indices().clone(), c.values().clone(),
                                            c.shape)
            nbytes = s.values().numel() * (t.element_size() + 8) + 8 * (t.shape[0] + 1)
        else:
            nz = t != 0
            s = {"shape": list(t.shape), "bits": torch.from_numpy(np.packbits(nz.flatten().numpy())),
                 "values": t[nz]}
            nbytes = s["bits"].numel() + s["values"].numel() * t.element_size()
        out[k] = s if nbytes < t.numel() * t.element_size() else t
    return out


def dense_from_sparse(state: dict[str, Any], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rebuild the dense state dict from :func:`sparse_state_dict` (``reference`` gives the shapes)."""
    out = {}
    for k, v in state.items():
        shape = reference[k].shape
        if isinstance(v, dict):
            n = math.prod(v["shape"])
            nz = torch.from_numpy(np.unpackbits(v["bits"].numpy())[:n].astype(bool))
            dense = torch.zeros(n, dtype=v["values"].dtype)
            dense[nz] = v["values"]
            out[k] = dense.view(shape)
        elif v.layout != torch.strided:
            out[k] = v.to_dense().reshape(shape)
        else:
            out[k] = v
    return out


def sparse_size_on_disk(model: nn.Module, fmt: str = "csr") -> int:
    """Bytes of ``torch.save(sparse_state_dict(model, fmt))``: what the sparse model really costs on disk."""
    buf = io.BytesIO()
    torch.save(sparse_state_dict(model, fmt), buf)
    return buf.getbuffer().nbytes


def storage_report(model: nn.Module) -> pd.DataFrame:
    """Bytes on disk: the dense state dict (masks folded in) and each sparse format."""
    rows = [{"format": "dense fp32", "bytes": size_on_disk(_dense_state(model))}]
    rows += [{"format": f"sparse {f}", "bytes": sparse_size_on_disk(model, f)} for f in SPARSE_FORMATS]
    df = pd.DataFrame(rows)
    df["kB"] = df["bytes"] / 1024
    df["vs dense"] = df["bytes"] / df["bytes"].iloc[0]
    return df


class CSRLinear(nn.Module):
    """A Linear whose weight is stored in CSR and multiplied with ``torch.sparse`` kernels, so that zeros are
    skipped instead of multiplied: the experiment that shows when a sparse kernel beats a dense one."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = clone_model(linear, fold=True).weight.detach()
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.weight = w.to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = (self.weight @ flat.T).T
        out = out if self.bias is None else out + self.bias
        return out.reshape(*x.shape[:-1], -1)
