"""Normalization layers by name: a registry, so a new normalization is one new module in this package and its test.

Each module here registers a :class:`Normalization` (its name, display label, colour, which model families it fits
and how to build it for ``dim`` features). :func:`make_norm` builds one by name for the models, and the models, the
zoo, the sweep and the plots read the list of names from :data:`REGISTRY`, so nothing else changes when one is
added. Modules are found by listing this package: ``standard`` (LayerNorm, BatchNorm, none) and ``dyt`` first, then
every other module in alphabetical order (``derf``, ...).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

#: Model families a normalization can serve: ``"vit"`` normalizes the last dimension of (batch, tokens, dim)
#: activations, ``"cnn"`` the channels of NCHW feature maps.
FAMILIES = ("vit", "cnn")


@dataclass(frozen=True)
class Normalization:
    """One registered normalization.

    ``build(dim, channels_last, alpha_init)`` returns the layer; ``alpha_init`` matters only to layers with a
    learnable input scale (DyT, Derf). ``layer_types`` are the module classes it builds, so the analysis code
    (``models.norm_parameters``) can find them in a trained model.
    """

    name: str
    label: str
    color: str
    families: tuple[str, ...]
    build: Callable[[int, bool, float], nn.Module]
    layer_types: tuple[type[nn.Module], ...] = ()


REGISTRY: dict[str, Normalization] = {}


def register_norm(spec: Normalization) -> Normalization:
    """Add ``spec`` to the registry (a second registration of a name is refused: it would hide the first)."""
    if spec.name in REGISTRY:
        raise ValueError(f"a normalization named {spec.name!r} is already registered")
    bad = [f for f in spec.families if f not in FAMILIES]
    if not spec.families or bad:
        raise ValueError(f"families={spec.families!r} is not valid; choose from {list(FAMILIES)}")
    REGISTRY[spec.name] = spec
    return spec


def norms_for(family: str) -> tuple[str, ...]:
    """The names of the normalizations a model family (``"vit"`` or ``"cnn"``) can use, in registry order."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not valid; choose one of {list(FAMILIES)}")
    return tuple(name for name, spec in REGISTRY.items() if family in spec.families)


def make_norm(norm: str, dim: int, channels_last: bool = True, alpha_init: float = 0.5) -> nn.Module:
    """Build the normalization layer named ``norm`` for ``dim`` features (``alpha_init``: DyT's/Derf's alpha)."""
    if norm not in REGISTRY:
        raise ValueError(f"norm={norm!r} is not valid; choose one of {list(REGISTRY)}")
    return REGISTRY[norm].build(dim, channels_last, alpha_init)


def norm_layer_types() -> tuple[type[nn.Module], ...]:
    """Every module class a registered normalization builds."""
    return tuple(dict.fromkeys(t for spec in REGISTRY.values() for t in spec.layer_types))


def _discover() -> None:
    first = ["standard", "dyt"]
    rest = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in first and not m.name.startswith("_"))
    for name in first + rest:
        importlib.import_module(f"{__name__}.{name}")


_discover()
