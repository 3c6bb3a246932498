"""The model zoo: every compressed model of the course, built one way and cached by its full recipe.

A recipe is a chain of steps applied to a baseline, joined by ``+``: ``"unstructured-70"``,
``"structured-50+dynamic-int8"``, ``"student-kd+unstructured-50+static-int8"``. Steps that train (fine-tuning
after pruning, quantization-aware training, distillation) are saved as checkpoints keyed by the chain up to that
step and every setting that produced them, so notebooks 02-07 get exactly the same model from the same recipe
without retraining. Post-training steps (PTQ, int8 conversion, half precision) take seconds and are recomputed.

Every kind of step is one registered class in :mod:`course_utils.steps` (its grammar, its checkpoint key and
what it does); ``steps.step_forms()`` lists them: pruning (``unstructured-N``, ``gradual-N``, ``structured-N``),
their controls (``finetune``, ``qat-control``), quantization (``qat-wBaB``, ``ptq-wBaB``, ``dynamic-int8``,
``static-int8``, ``float16``, ``bfloat16``) and distillation (``student-M``, first step only).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from . import parallel
from .args import check_int
from .baselines import DEFAULT_ALPHA, baseline_config, checkpoint_name, get_baseline
from .checkpoints import is_cached, train_or_load
from .data import DataBundle, get_data
from .steps import (  # re-exported: notebooks use the zoo's recipes and helpers under these names
    CALIBRATION_IMAGES,
    FINETUNE,
    FINETUNE_SUBSET,
    GRADUAL,
    QAT,
    STUDENT,
    STUDENT_EPOCHS,
    STUDENT_METHODS,
    STUDENT_SIZE,
    Step,
    StepContext,
    calibration_images,
    calibration_set,
    distill_student,
    finetune,
    finetune_steps,
    parse_step,
    student_losses,
)
from .train import History

__all__ = [
    "CALIBRATION_IMAGES", "EXAMPLES", "FINETUNE", "FINETUNE_SUBSET", "GRADUAL", "QAT", "STUDENT", "STUDENT_EPOCHS",
    "STUDENT_METHODS", "STUDENT_SIZE", "VARIANT_KEYS", "Variant", "calibration_images", "calibration_set",
    "describe", "distill_student", "finetune", "finetune_steps", "get_variant", "get_variants", "parse_recipe",
    "parse_steps", "student_losses",
]

#: Recipes written in the course's examples and docs (every form: ``steps.step_forms()``).
EXAMPLES = ("dense", "unstructured-50", "unstructured-70", "unstructured-90", "structured-50", "finetune",
            "qat-control", "qat-w4a8", "ptq-w8a8", "ptq-w4a8", "ptq-w4a4", "dynamic-int8", "static-int8", "float16",
            "student-kd", "student-fitnet", "student-kd+dynamic-int8")


@dataclass
class Variant:
    """A model of the zoo: the module, its recipe and the training history of each trained step."""

    recipe: str
    family: str
    norm: str
    seed: int
    model: nn.Module
    histories: dict[str, History] = field(default_factory=dict)

    @property
    def history(self) -> History:
        """History of the last trained step (the baseline's for ``dense``)."""
        return list(self.histories.values())[-1] if self.histories else {}


def _spells_a_step(text: str) -> bool:
    try:
        parse_step(text)
        return True
    except ValueError:
        return False


def parse_steps(recipe: str) -> list[Step]:
    """The registered steps of ``recipe`` (``"dense"`` has none), each checked; a ValueError lists the valid forms."""
    if not isinstance(recipe, str) or not recipe.strip():
        raise ValueError(f"recipe={recipe!r} is not valid; give a name such as {list(EXAMPLES)}")
    if recipe == "dense":
        return []
    # a step's own text may contain "+" ("student-crd+kd"): join a piece to the previous one when together they
    # spell a valid step
    merged: list[str] = []
    for s in recipe.split("+"):
        if merged and _spells_a_step(f"{merged[-1]}+{s}"):
            merged[-1] = f"{merged[-1]}+{s}"
        else:
            merged.append(s)
    steps = []
    for i, text in enumerate(merged):
        try:
            step = parse_step(text)
        except ValueError as e:
            raise ValueError(f"recipe={recipe!r}: {e}") from None
        if step.first_only and i > 0:
            raise ValueError(f"recipe={recipe!r}: a {step.kind} step must come first (distill, then compress)")
        steps.append(step)
    return steps


def parse_recipe(recipe: str) -> list[str]:
    """The steps of ``recipe`` as written (``"dense"`` has none); see :func:`parse_steps`."""
    return [step.text for step in parse_steps(recipe)]


@dataclass(frozen=True)
class _Step:
    """One step of a recipe: what it is, the chain up to it, and (trained steps) its checkpoint name and key."""

    step: Step
    chain: str
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return bool(self.name)


def _plan(recipe: str, model: str, norm: str, dataset: str, smoke: bool, seed: int, alpha_init: float,
          student_size: str | None, ft_seed: int | None) -> tuple[dict[str, Any], list[_Step]]:
    """The baseline's configuration and every step of ``recipe`` with the checkpoint it is kept in."""
    steps = parse_steps(recipe)
    check_int("seed", seed)
    if ft_seed is not None:
        check_int("ft_seed", ft_seed)
    base_cfg = baseline_config(model, norm, dataset, smoke, seed, alpha_init=alpha_init)
    stem = checkpoint_name(base_cfg)
    # the key needs the family and the student size only; the data are not loaded to plan
    ctx = StepContext(None, model, norm, seed, smoke, student_size=student_size)  # type: ignore[arg-type]
    done: list[str] = []
    plan = []
    for step in steps:
        done.append(step.text)
        chain = "+".join(done)
        if not step.trained:
            plan.append(_Step(step, chain))
            continue
        name = f"zoo-{stem}--{chain.replace('+', '--')}" + (f"--ft{ft_seed}" if ft_seed is not None else "")
        plan.append(_Step(step, chain, name, {**base_cfg, "chain": chain, **step.key(ctx), "ft_seed": ft_seed}))
    return base_cfg, plan


def get_variant(recipe: str = "dense", model: str = "vit", norm: str = "dyt", *, dataset: str = "mnist_5k",
                smoke: bool = False, seed: int = 0, data: DataBundle | None = None, device: str = "cpu",
                alpha_init: float = DEFAULT_ALPHA, student_size: str | None = None, ft_seed: int | None = None,
                verbose: bool = False) -> Variant:
    """The model named by ``recipe``, built from the ``model``/``norm`` baseline of ``seed`` (see the module doc).

    Trained steps are loaded from ``checkpoints/`` when their full recipe matches, else trained and saved.
    ``ft_seed`` (default: ``seed``) seeds the trained steps alone, for populations of models that share a baseline
    but differ in their fine-tuning (notebook 04's student seeds, notebook 05's compression-identified exemplars).
    Many variants at once, trained side by side: :func:`get_variants`.
    """
    base_cfg, plan = _plan(recipe, model, norm, dataset, smoke, seed, alpha_init, student_size, ft_seed)
    step_seed = seed if ft_seed is None else ft_seed
    bundle = data if data is not None else get_data(dataset, 64, smoke=smoke, seed=seed)
    current, history = get_baseline(model, norm, dataset, smoke=smoke, seed=seed, data=bundle, device=device,
                                    progress=False, alpha_init=alpha_init, verbose=verbose)
    histories: dict[str, History] = {"dense": history}
    ctx = StepContext(bundle, model, norm, step_seed, smoke, device, student_size)
    for st in plan:
        if st.trained:
            parent = current
            current, histories[st.step.text] = train_or_load(
                st.name, lambda p=parent, s=st.step: s.start(p, ctx),
                lambda m, p=parent, s=st.step: s.train(m, p, ctx), st.config, verbose=verbose)
        else:
            current = st.step.apply(current, ctx)
    return Variant(recipe, model, norm, seed, current.eval(), histories)


#: What :func:`get_variants` takes per model: the recipe plus the keyword arguments of :func:`get_variant`.
VARIANT_KEYS = ("recipe", "model", "norm", "dataset", "smoke", "seed", "data", "device", "alpha_init",
                "student_size", "ft_seed")


def _warm_baseline(**kwargs: Any) -> None:
    """Worker side of :func:`get_variants`: train (or find) one baseline; the checkpoint is the result."""
    get_baseline(progress=False, verbose=False, **kwargs)


def _warm_variant(**kwargs: Any) -> None:
    """Worker side of :func:`get_variants`: train the last missing step of one recipe."""
    get_variant(verbose=False, **kwargs)


def get_variants(specs: list[dict[str, Any]], *, workers: int = 0, desc: str = "zoo", progress: bool = True,
                 **common: Any) -> list[Variant]:
    """Many zoo models at once, e.g. every regime of every seed: ``[get_variant(**common, **spec) ...]``, in order.

    What is not cached yet is trained by :func:`course_utils.parallel.run`, ``workers`` processes side by side (0:
    one per core): each missing baseline and each missing trained step once however many recipes share it, a
    step as soon as the checkpoint it starts from exists. Every model is then loaded here from its checkpoint,
    exactly as :func:`get_variant` returns it (each training is single-threaded wherever it runs, so the numbers
    are the same).
    """
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, dict) for s in specs):
        raise ValueError(f"specs={specs!r} is not valid; give a list of dicts such as "
                         "[{'recipe': 'unstructured-50', 'model': 'vit', 'norm': 'dyt', 'seed': 1}]")
    full = []
    for s in specs:
        kw = {**common, **s}
        unknown = sorted(set(kw) - set(VARIANT_KEYS))
        if unknown:
            raise ValueError(f"unknown get_variant arguments {unknown}; choose from {list(VARIANT_KEYS)}")
        full.append(kw)
    defaults = {k: p.default for k, p in inspect.signature(get_variant).parameters.items()}
    plan_keys = inspect.signature(_plan).parameters
    plans = [_plan(**{k: kw.get(k, defaults[k]) for k in plan_keys}) for kw in full]
    device = full[0].get("device", "cpu") if full else "cpu"
    # One call per missing checkpoint (a baseline, or a trained step however many recipes share it). Each waits
    # only for the call that makes its parent, so no core idles while a fine-tuning could already start; the
    # longest jobs go first (baselines, then students, shallow steps before deep ones) so none is left alone last.
    todo: dict[str, tuple[tuple[int, int], parallel.Call, str | None]] = {}
    for kw, (base_cfg, plan) in zip(full, plans):
        parent = checkpoint_name(base_cfg)
        if parent not in todo and not is_cached(parent, base_cfg):
            base_kw = {k: kw[k] for k in ("model", "norm", "dataset", "smoke", "seed", "data", "device",
                                          "alpha_init") if k in kw}
            todo[parent] = ((0, 0), parallel.call(_warm_baseline, label=parent, **base_kw), None)
        for depth, st in enumerate([st for st in plan if st.trained], start=1):
            if st.name not in todo and not is_cached(st.name, st.config):
                rank = (depth, 0 if st.step.first_only else 1)
                todo[st.name] = (rank, parallel.call(_warm_variant, label=st.name, **{**kw, "recipe": st.chain}),
                                 parent if parent in todo else None)
            parent = st.name
    names = sorted(todo, key=lambda k: todo[k][0])  # stable: equal ranks keep the order of the specs
    position = {name: i for i, name in enumerate(names)}
    calls = [todo[k][1] for k in names]
    after = [[position[p]] if (p := todo[k][2]) is not None else [] for k in names]
    if calls:
        parallel.run(calls, workers=workers, device=device, desc=desc, progress=progress, after=after)
    return [get_variant(**kw) for kw in full]


def describe(extra: dict[str, Any] | None = None) -> str:
    """One paragraph of the zoo's recipes, for a notebook's text."""
    ft, q = FINETUNE, QAT
    return (f"Fine-tuning after pruning: {ft.epochs} epochs at lr {ft.lr:g} with {ft.augment} augmentation "
            f"(ConvNet on {FINETUNE_SUBSET['cnn']} images); QAT and its fp32 control: {q.epochs} epoch at lr "
            f"{q.lr:g}; calibration: {CALIBRATION_IMAGES} training images stratified by class; students: "
            f"{STUDENT_EPOCHS['vit']} epochs (ViT) at lr {STUDENT['lr']:g}." + (f" {extra}" if extra else ""))
