"""The model zoo: every compressed model of the course, built one way and cached by its full recipe.

A recipe is a chain of steps applied to a baseline, joined by ``+``: ``"unstructured-70"``,
``"structured-50+dynamic-int8"``, ``"student-kd+unstructured-50+static-int8"``. Steps that train (fine-tuning
after pruning, quantization-aware training, distillation) are saved as checkpoints keyed by the chain up to that
step and every setting that produced them, so notebooks 02-07 get exactly the same model from the same recipe
without retraining. Post-training steps (PTQ, int8 conversion, half precision) take seconds and are recomputed.

Steps (``N`` a percentage, ``B`` a bit width from 2 to 8):

- ``unstructured-N``: global magnitude pruning to N% sparsity, then fine-tuning with the masks fixed;
- ``gradual-N``: the same fine-tuning from the dense model, pruning along the way on the cubic schedule of Zhu &
  Gupta (2017) up to N% (:data:`GRADUAL`);
- ``structured-N``: remove N% of the heads and FFN neurons (ViT) or channels (ConvNet), then fine-tune;
- ``finetune``: the fine-tuning after pruning, on the dense model (the control of the pruning runs);
- ``qat-control``: the training of ``qat`` without quantization (its fp32 control);
- ``qat-wBaB``: quantization-aware training with fake-quantized weights and inputs;
- ``ptq-wBaB``: post-training fake quantization, calibrated on training images;
- ``dynamic-int8``, ``static-int8``: real int8 models with torchao (``quantize_`` dynamic int8; PT2E static int8,
  calibrated); ``float16``, ``bfloat16``: half precision;
- ``student-M`` (first step only): a smaller student distilled from the model with method M in
  :data:`STUDENT_METHODS` (``scratch`` trains the same student on labels only, the control).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from . import parallel
from . import quantization as Q
from .args import check_choice, check_int
from .baselines import AUGMENTATIONS, DEFAULT_ALPHA, baseline_config, checkpoint_name, get_baseline
from .checkpoints import is_cached, train_or_load
from .data import DataBundle, get_data, stratified_sample
from .distillation import distill
from .models import build_model, track_norms
from .modules import clone_model
from .pruning import GradualPruner, global_prune, structured_prune
from .train import History, fit

#: Fine-tuning after pruning: short, at 40% of the ViT baseline's peak learning rate, with its augmentation.
FINETUNE = {"epochs": 2, "lr": 2e-3, "weight_decay": 0.05, "augment": "shift"}
#: Gradual pruning (``gradual-N``): the sparsity ramps over this fraction of the fine-tuning steps (the rest recover),
#: masks recomputed every ``frequency`` steps and re-applied after every step.
GRADUAL = {"ramp_fraction": 0.75, "frequency": 5}
#: Quantization-aware training (and its fp32 control): one epoch at a lower learning rate, no augmentation.
QAT = {"epochs": 1, "lr": 5e-4, "weight_decay": 0.05, "augment": "none"}
#: Training images used for fine-tuning per family (the ConvNet is ~3x slower per image: a subset).
FINETUNE_SUBSET = {"vit": None, "cnn": 1000}
#: Calibration images for PTQ and static int8 (the first ones of the training set, never test images).
CALIBRATION_IMAGES = 512
#: Students: the preset distilled from each family, and the distillation recipe. Notebook 04 shows why: the scratch
#: student's accuracy has flattened after these epochs, and the temperature and KD weight won a small grid on a
#: validation split. The FitNets and CRD weights are RepDistiller's (its beta).
STUDENT_SIZE = {"vit": "nano", "cnn": "tiny"}
STUDENT_EPOCHS = {"vit": 20, "cnn": 8}  # the ConvNet family learns MNIST in a few epochs (its baselines train 8)
STUDENT = {"lr": 1.2e-2, "weight_decay": 0.05, "grad_clip": 1.0, "temperature": 2.0, "kd_weight": 0.5,
           "hint_weight": 100.0, "crd_weight": 0.8, "crd_negatives": 1024, "eval_every": 2}


def student_losses(method: str, kd_weight: float | None = None) -> dict[str, float]:
    """Loss weights of a student method (``scratch``, ``kd``, ``fitnet``, ``crd``, ``crd+kd``, ``infonce``)."""
    check_choice("method", method, STUDENT_METHODS)
    w = STUDENT["kd_weight"] if kd_weight is None else kd_weight
    kd = {"ce": 1.0 - w, "kd": w}
    return {"scratch": {"ce": 1.0}, "kd": kd, "fitnet": {"ce": 1.0, "hint": STUDENT["hint_weight"]},
            "crd": {"ce": 1.0, "crd": STUDENT["crd_weight"]}, "crd+kd": {**kd, "crd": STUDENT["crd_weight"]},
            "infonce": {"ce": 1.0, "infonce": STUDENT["crd_weight"]}}[method]


STUDENT_METHODS = ("scratch", "kd", "fitnet", "crd", "crd+kd", "infonce")

_STEP = re.compile(r"^(?:(unstructured|structured|gradual)-(\d{1,2})|(qat|ptq)-w([2-8])a([2-8])|(finetune|qat-control)"
                   r"|(dynamic-int8|static-int8|float16|bfloat16)|student-([a-z+]+))$")
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


def parse_recipe(recipe: str) -> list[str]:
    """The steps of ``recipe`` (``"dense"`` has none); a ValueError lists the valid forms."""
    if not isinstance(recipe, str) or not recipe.strip():
        raise ValueError(f"recipe={recipe!r} is not valid; give a name such as {list(EXAMPLES)}")
    if recipe == "dense":
        return []
    steps = recipe.split("+")
    # "student-crd+kd" is one step: re-join a method name that contains a "+"
    merged: list[str] = []
    for s in steps:
        if merged and merged[-1].startswith("student-") and f"{merged[-1][8:]}+{s}" in STUDENT_METHODS:
            merged[-1] = f"{merged[-1]}+{s}"
        else:
            merged.append(s)
    for i, s in enumerate(merged):
        m = _STEP.match(s)
        if m is None:
            raise ValueError(f"recipe={recipe!r}: step {s!r} is not valid; steps are unstructured-N, gradual-N, "
                             "structured-N "
                             "(N a percentage), qat-wBaB, ptq-wBaB (B in 2..8), finetune, dynamic-int8, static-int8, "
                             f"float16, bfloat16, student-M with M in {list(STUDENT_METHODS)}; e.g. {list(EXAMPLES)}")
        if m.group(8) is not None:
            check_choice("student method", m.group(8), STUDENT_METHODS)
            if i > 0:
                raise ValueError(f"recipe={recipe!r}: a student step must come first (distill, then compress)")
        if m.group(2) is not None and not 1 <= int(m.group(2)) <= 99:
            raise ValueError(f"recipe={recipe!r}: {s!r} needs a percentage from 1 to 99")
    return merged


def calibration_set(bundle: DataBundle, n: int = CALIBRATION_IMAGES) -> tuple[torch.Tensor, torch.Tensor]:
    """The calibration images and labels of every quantizer and runtime: ``n`` training images stratified by class.

    Drawn with the fixed :data:`~course_utils.data.SAMPLE_SEED`, so the eager quantizers, ONNX Runtime, OpenVINO,
    ExecuTorch and the bench all calibrate on the same images; never the test set.
    """
    ds = bundle.train_loader.dataset
    return stratified_sample(ds, min(n, len(ds)))


def calibration_images(bundle: DataBundle, n: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """The images of :func:`calibration_set`."""
    return calibration_set(bundle, n)[0]


def _loader(bundle: DataBundle, subset: int | None, seed: int) -> DataLoader:
    ds = bundle.train_loader.dataset
    if subset is not None and subset < len(ds):
        keep = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:subset]
        ds = Subset(ds, sorted(keep.tolist()))
    return DataLoader(ds, batch_size=bundle.train_loader.batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def _finetune_setup(bundle: DataBundle, family: str, seed: int, smoke: bool,
                    recipe: dict[str, Any]) -> tuple[DataLoader, int]:
    subset = FINETUNE_SUBSET[family] if recipe is FINETUNE else None
    if smoke:
        subset = min(subset or 128, 128)
    return _loader(bundle, subset, seed), 1 if smoke else recipe["epochs"]


def finetune_steps(bundle: DataBundle, family: str, smoke: bool = False, recipe: dict[str, Any] | None = None) -> int:
    """How many optimizer steps :func:`finetune` takes (for schedules that must end with the fine-tuning)."""
    loader, epochs = _finetune_setup(bundle, family, 0, smoke, recipe or FINETUNE)
    return epochs * len(loader)


def finetune(model: nn.Module, bundle: DataBundle, family: str, seed: int = 0, smoke: bool = False,
             device: str = "cpu", recipe: dict[str, Any] | None = None, **kwargs: Any) -> History:
    """Fine-tune ``model`` with the zoo's recipe (default :data:`FINETUNE`; :data:`QAT` for quantization-aware
    training), recording every norm layer's alpha and gamma after each epoch. Extra ``kwargs`` go to ``fit``
    (e.g. ``after_step=GradualPruner(...)``): notebooks use this for runs outside the zoo with the same recipe."""
    recipe = recipe or FINETUNE
    loader, epochs = _finetune_setup(bundle, family, seed, smoke, recipe)
    return fit(model, loader, bundle.test_loader, epochs=epochs, lr=recipe["lr"], weight_decay=recipe["weight_decay"],
               seed=seed, device=device, progress=False, augment=AUGMENTATIONS[recipe["augment"]],
               after_epoch=track_norms(), **kwargs)


def _recipe_of(step: str) -> dict[str, Any]:
    return QAT if step.startswith("qat") else FINETUNE


def _prepare(parent: nn.Module, step: str, bundle: DataBundle) -> nn.Module:
    """The untrained starting point of a trained step (cheap and deterministic, so a checkpoint can load into it)."""
    kind, _, arg = step.partition("-")
    if kind == "unstructured":
        return global_prune(clone_model(parent), int(arg) / 100)
    if kind == "gradual":  # dense, with all-ones masks that the fine-tuning grows (GradualPruner)
        return global_prune(clone_model(parent), 0.0)
    if kind == "structured":
        return structured_prune(parent, int(arg) / 100)
    if kind == "finetune" or step == "qat-control":
        return clone_model(parent)
    wb, ab = (int(v) for v in re.findall(r"\d", arg))  # qat-wBaB
    return Q.calibrate(Q.fake_quantize_model(parent, wb, ab), calibration_images(bundle))


def _train_step(model: nn.Module, step: str, bundle: DataBundle, family: str, seed: int, smoke: bool,
                device: str) -> History:
    """Train a prepared fine-tuning, gradual-pruning or QAT step with its recipe."""
    extra: dict[str, Any] = {}
    if step.startswith("gradual"):
        ramp = max(1, int(GRADUAL["ramp_fraction"] * finetune_steps(bundle, family, smoke)))
        extra["after_step"] = GradualPruner(model, int(step.partition("-")[2]) / 100, total_steps=ramp,
                                            frequency=GRADUAL["frequency"])
    return finetune(model, bundle, family, seed, smoke, device, _recipe_of(step), **extra)


def _post_training(parent: nn.Module, step: str, bundle: DataBundle) -> nn.Module:
    if step.startswith("ptq"):
        wb, ab = (int(v) for v in re.findall(r"\d", step))
        return Q.calibrate(Q.fake_quantize_model(parent, wb, ab), calibration_images(bundle))
    if step == "dynamic-int8":
        return Q.dynamic_int8(parent)
    if step == "static-int8":
        return Q.static_int8(parent, calibration_images(bundle))
    return Q.HalfPrecision(parent, step)


def distill_student(teacher: nn.Module | None, method: str, bundle: DataBundle, family: str = "vit",
                    norm: str = "dyt", seed: int = 0, smoke: bool = False, device: str = "cpu",
                    size: str | None = None, student: nn.Module | None = None,
                    **overrides: Any) -> tuple[nn.Module, History]:
    """A new student of ``size`` (default :data:`STUDENT_SIZE`) trained with the zoo's recipe from ``teacher``
    (``method="scratch"``: labels only, no teacher). ``overrides`` change the recipe (``epochs``, ``temperature``,
    ``kd_weight``, ``losses``...): notebook 04 uses them for its grid, its seeds and its little-data study.
    A given ``student`` is trained in place instead of a new one."""
    info = bundle.info
    r = {**STUDENT, "epochs": STUDENT_EPOCHS[family], **overrides}
    losses = r.pop("losses", None) or student_losses(method, r["kd_weight"])
    if student is None:
        torch.manual_seed(seed)
        student = build_model(family, norm, info.num_classes, info.input_shape, size or STUDENT_SIZE[family])
    history = distill(student, None if method == "scratch" else teacher, bundle.train_loader, bundle.test_loader,
                      losses=losses, epochs=1 if smoke else r["epochs"], lr=r["lr"], weight_decay=r["weight_decay"],
                      grad_clip=r["grad_clip"], temperature=r["temperature"],
                      crd_negatives=min(r["crd_negatives"], len(bundle.train_loader.dataset)), seed=seed,
                      eval_every=r["eval_every"], device=device, progress=False)
    return student.eval(), history


def _train_student(student: nn.Module, teacher: nn.Module, method: str, bundle: DataBundle, family: str, norm: str,
                   seed: int, smoke: bool, device: str, size: str) -> History:
    return distill_student(teacher, method, bundle, family, norm, seed, smoke, device, size, student=student)[1]


@dataclass(frozen=True)
class _Step:
    """One step of a recipe: what it is, the chain up to it, and (trained steps) its checkpoint name and key."""

    step: str
    chain: str
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return bool(self.name)


def _plan(recipe: str, model: str, norm: str, dataset: str, smoke: bool, seed: int, alpha_init: float,
          student_size: str | None, ft_seed: int | None) -> tuple[dict[str, Any], list[_Step]]:
    """The baseline's configuration and every step of ``recipe`` with the checkpoint it is kept in."""
    steps = parse_recipe(recipe)
    check_int("seed", seed)
    if ft_seed is not None:
        check_int("ft_seed", ft_seed)
    base_cfg = baseline_config(model, norm, dataset, smoke, seed, alpha_init=alpha_init)
    stem = checkpoint_name(base_cfg)
    done: list[str] = []
    plan = []
    for step in steps:
        done.append(step)
        chain = "+".join(done)
        name = f"zoo-{stem}--{chain.replace('+', '--')}" + (f"--ft{ft_seed}" if ft_seed is not None else "")
        if step.startswith("student-"):
            size = student_size or STUDENT_SIZE[model]
            cfg = {**base_cfg, "chain": chain, "student": {**STUDENT, "epochs": STUDENT_EPOCHS[model], "size": size,
                                                          "losses": student_losses(step[8:])},
                   "ft_seed": ft_seed}
        elif step.startswith(("unstructured", "gradual", "structured", "qat", "finetune")):
            cfg = {**base_cfg, "chain": chain, "step": _recipe_of(step), "subset": FINETUNE_SUBSET[model],
                   "ft_seed": ft_seed, **({"gradual": GRADUAL} if step.startswith("gradual") else {})}
        else:
            plan.append(_Step(step, chain))
            continue
        plan.append(_Step(step, chain, name, cfg))
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
    for st in plan:
        step, cfg = st.step, st.config
        if step.startswith("student-"):
            method, size = step[8:], cfg["student"]["size"]
            current, histories[step] = train_or_load(
                st.name, lambda sz=size: build_model(model, norm, bundle.info.num_classes, bundle.info.input_shape, sz),
                lambda m, t=current, me=method, sz=size: _train_student(m, t, me, bundle, model, norm, step_seed,
                                                                        smoke, device, sz), cfg, verbose=verbose)
        elif st.trained:
            parent = current
            current, histories[step] = train_or_load(
                st.name, lambda p=parent, s=step: _prepare(p, s, bundle),
                lambda m, s=step: _train_step(m, s, bundle, model, step_seed, smoke, device), cfg, verbose=verbose)
        else:
            current = _post_training(current, step, bundle)
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
                rank = (depth, 0 if st.step.startswith("student-") else 1)
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
    return (f"Fine-tuning after pruning: {ft['epochs']} epochs at lr {ft['lr']:g} with shift augmentation "
            f"(ConvNet on {FINETUNE_SUBSET['cnn']} images); QAT and its fp32 control: {q['epochs']} epoch at lr "
            f"{q['lr']:g}; calibration: {CALIBRATION_IMAGES} training images stratified by class; students: "
            f"{STUDENT_EPOCHS['vit']} epochs (ViT) at lr {STUDENT['lr']:g}." + (f" {extra}" if extra else ""))
