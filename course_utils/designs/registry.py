"""Design tasks: the student chooses a small configuration, the course measures it against a target.

A design task is registered under a name. The notebook's design cell assigns one literal (a dict, a list, a number)
to the task's variable inside a solution block and names the task in a fixed line, ``# DESIGN: <name> (N points)``.
The grader reads the literal without running student code (:func:`read_config`), measures it on the held-out half
of the test set, and gives points in proportion to how close the result comes to each target; the notebook shows
the student the same measurement on the other half (the *dev* half), so nobody tunes on the split that grades.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..args import check_choice
from ..baselines import get_baseline
from ..data import SAMPLE_SEED, DataBundle, get_data, labels_of

SPLITS = ("dev", "held-out")
#: Every task starts from notebook 01's ViT-DyT baseline on the course's default data and seed.
DATASET, SEED = "mnist_5k", 0


@dataclass(frozen=True)
class Target:
    """One target of a design task: ``value`` must be at most ``limit``; points fall linearly to 0 at ``zero_at``."""

    what: str
    value: float
    limit: float
    zero_at: float
    unit: str = ""

    @property
    def score(self) -> float:
        if self.value <= self.limit:
            return 1.0
        return max(0.0, 1.0 - (self.value - self.limit) / (self.zero_at - self.limit))

    def line(self) -> str:
        met = "met" if self.value <= self.limit else f"missed by {self.value - self.limit:.1f}{self.unit}"
        return f"{self.what}: {self.value:.1f}{self.unit} (target at most {self.limit:g}{self.unit}: {met})"


@dataclass(frozen=True)
class DesignResult:
    """What a configuration achieved: the targets (each with its value) and the fraction of the points earned."""

    targets: tuple[Target, ...]
    measured: dict[str, float]

    @property
    def fraction(self) -> float:
        """The mean of the targets' scores: each target is worth the same share of the points."""
        return sum(t.score for t in self.targets) / len(self.targets)

    def feedback(self) -> str:
        return "; ".join(t.line() for t in self.targets)


@dataclass(frozen=True)
class DesignTask:
    """A registered design task: the variable its cell assigns, and how a configuration is checked and measured."""

    name: str
    variable: str
    summary: str
    check: Callable[[Any], Any]  # the configuration, validated (ValueError naming what is wrong)
    measure: Callable[[Any, bool, str], DesignResult]  # (validated configuration, smoke, split)


DESIGNS: dict[str, DesignTask] = {}


def register_design(task: DesignTask) -> DesignTask:
    if task.name in DESIGNS:
        raise ValueError(f"a design task named {task.name!r} is already registered")
    DESIGNS[task.name] = task
    return task


def get_design(name: str) -> DesignTask:
    check_choice("design", name, tuple(DESIGNS))
    return DESIGNS[name]


def read_config(source: str, variable: str) -> Any:
    """The literal a design cell's solution assigns to ``variable``, read without running it (``ast.literal_eval``);
    ValueError saying what the cell must look like."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"the design cell is not valid Python ({e.msg}, line {e.lineno})") from e
    found = [n for n in tree.body if isinstance(n, ast.Assign) and len(n.targets) == 1
             and isinstance(n.targets[0], ast.Name) and n.targets[0].id == variable]
    if len(found) != 1:
        raise ValueError(f"the design cell must assign `{variable} = ...` exactly once")
    try:
        return ast.literal_eval(found[0].value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"`{variable}` must be written out as a literal (numbers, strings, lists, dicts), "
                         f"not computed ({type(e).__name__})") from e


@lru_cache(maxsize=2)
def _load_baseline(smoke: bool) -> tuple[nn.Module, DataBundle]:
    data = get_data(DATASET, smoke=smoke, seed=SEED)
    model = get_baseline("vit", "dyt", dataset=DATASET, smoke=smoke, seed=SEED, data=data, device="cpu",
                         progress=False, verbose=False)[0]
    return model, data


def baseline(smoke: bool) -> tuple[nn.Module, DataBundle]:
    """Notebook 01's ViT-DyT baseline and its data, loaded once per process for every task; each call gets its own
    copy of the model, so what one task does to it (distillation freezes a teacher's parameters) never reaches
    another."""
    model, data = _load_baseline(smoke)
    return copy.deepcopy(model), data


def check_per_layer(config: Any, names: Sequence[str], kind: str, value: str, valid: Callable[[Any], bool],
                    rule: str) -> dict[str, Any]:
    """A ``{layer name: value}`` configuration over the ViT's ``kind`` layers (``names``): a non-empty dict whose
    keys are layer names and whose values pass ``valid`` (never a bool); ValueError naming the first problem, with
    ``rule`` saying what a value must be."""
    if not isinstance(config, dict) or not config:
        raise ValueError(f"give a non-empty dict {{layer name: {value}}}, not {type(config).__name__}")
    unknown = [k for k in config if k not in names]
    if unknown:
        raise ValueError(f"{unknown[:3]} are not {kind} layers of the ViT; the layers are {list(names)}")
    bad = {k: v for k, v in config.items() if isinstance(v, bool) or not valid(v)}
    if bad:
        raise ValueError(f"{rule}: {bad}")
    return dict(config)


def split_indices(bundle: DataBundle, split: str) -> torch.Tensor:
    """Test-set indices of the ``dev`` or ``held-out`` half: each class's examples, shuffled with the sample seed,
    go half to each (so both halves hold each class within one example of each other)."""
    check_choice("split", split, SPLITS)
    y = labels_of(bundle.test_loader)
    gen = torch.Generator().manual_seed(SAMPLE_SEED)
    halves: list[torch.Tensor] = []
    for c in y.unique().tolist():
        pool = torch.nonzero(y == c).flatten()
        pool = pool[torch.randperm(len(pool), generator=gen)]
        halves.append(pool[: (len(pool) + 1) // 2] if split == "dev" else pool[(len(pool) + 1) // 2:])
    return torch.sort(torch.cat(halves)).values


def split_data(bundle: DataBundle, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of a half of the test set (see :func:`split_indices`)."""
    idx = split_indices(bundle, split)
    ds = bundle.test_loader.dataset
    xs, ys = zip(*(ds[i] for i in idx.tolist()))
    return torch.stack(xs), torch.as_tensor(ys)


def evaluate(name: str, config: Any, smoke: bool = False, split: str = "held-out") -> DesignResult:
    """Check ``config`` for design task ``name`` (ValueError before any work), then measure it on ``split``."""
    task = get_design(name)
    check_choice("split", split, SPLITS)
    return task.measure(task.check(config), smoke, split)
