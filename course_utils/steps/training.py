"""What the trained steps share: the fine-tuning recipes, the fine-tuning itself and the calibration images."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..args import check_choice
from ..baselines import AUGMENTATIONS
from ..data import DataBundle, stratified_sample
from ..models import track_norms
from ..train import History, fit


@dataclass(frozen=True)
class FinetuneRecipe:
    """A short training of an existing model: epochs, learning rate, weight decay and augmentation.

    ``family_subset``: fine-tune on :data:`FINETUNE_SUBSET` images of the family (the ConvNet is ~3x slower per
    image), not on the whole training set."""

    epochs: int
    lr: float
    weight_decay: float
    augment: str
    family_subset: bool = False

    def __post_init__(self) -> None:
        check_choice("augment", self.augment, tuple(AUGMENTATIONS))

    def key(self) -> dict[str, Any]:
        """The settings that decide the trained weights (what a checkpoint is keyed by)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "family_subset"}


#: Fine-tuning after pruning: short, at 40% of the ViT baseline's peak learning rate, with its augmentation.
FINETUNE = FinetuneRecipe(epochs=2, lr=2e-3, weight_decay=0.05, augment="shift", family_subset=True)
#: Quantization-aware training (and its fp32 control): one epoch at a lower learning rate, no augmentation.
QAT = FinetuneRecipe(epochs=1, lr=5e-4, weight_decay=0.05, augment="none")
#: Gradual pruning (``gradual-N``): the sparsity ramps over this fraction of the fine-tuning steps (the rest recover),
#: masks recomputed every ``frequency`` steps and re-applied after every step.
GRADUAL = {"ramp_fraction": 0.75, "frequency": 5}
#: Training images used for fine-tuning per family (the ConvNet is ~3x slower per image: a subset).
FINETUNE_SUBSET = {"vit": None, "cnn": 1000}
#: Calibration images for PTQ and static int8 (training images stratified by class, never test images).
CALIBRATION_IMAGES = 512


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
                    recipe: FinetuneRecipe) -> tuple[DataLoader, int]:
    if not isinstance(recipe, FinetuneRecipe):
        raise ValueError(f"recipe must be a FinetuneRecipe such as zoo.FINETUNE or zoo.QAT, got {recipe!r}")
    subset = FINETUNE_SUBSET[family] if recipe.family_subset else None
    if smoke:
        subset = min(subset or 128, 128)
    return _loader(bundle, subset, seed), 1 if smoke else recipe.epochs


def finetune_steps(bundle: DataBundle, family: str, smoke: bool = False, recipe: FinetuneRecipe | None = None) -> int:
    """How many optimizer steps :func:`finetune` takes (for schedules that must end with the fine-tuning)."""
    loader, epochs = _finetune_setup(bundle, family, 0, smoke, recipe or FINETUNE)
    return epochs * len(loader)


def finetune(model: nn.Module, bundle: DataBundle, family: str, seed: int = 0, smoke: bool = False,
             device: str = "cpu", recipe: FinetuneRecipe | None = None, **kwargs: Any) -> History:
    """Fine-tune ``model`` with the zoo's recipe (default :data:`FINETUNE`; :data:`QAT` for quantization-aware
    training), recording every norm layer's alpha and gamma after each epoch. Extra ``kwargs`` go to ``fit``
    (e.g. ``after_step=GradualPruner(...)``): notebooks use this for runs outside the zoo with the same recipe."""
    recipe = recipe or FINETUNE
    loader, epochs = _finetune_setup(bundle, family, seed, smoke, recipe)
    return fit(model, loader, bundle.test_loader, epochs=epochs, lr=recipe.lr, weight_decay=recipe.weight_decay,
               seed=seed, device=device, progress=False, augment=AUGMENTATIONS[recipe.augment],
               after_epoch=track_norms(), **kwargs)


def finetune_key(recipe: FinetuneRecipe, family: str) -> dict[str, Any]:
    """The checkpoint key of a fine-tuning step: its recipe and the family's training subset."""
    return {"step": recipe.key(), "subset": FINETUNE_SUBSET[family]}
