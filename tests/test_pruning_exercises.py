"""The references of notebook 02's fine-grained-pruning and masked-step exercises, and their downstream hooks."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from course_utils.modules import effective_weight
from course_utils.pruning import ThresholdPruner, fine_grained_mask, masked_step, sensitivity_scan
from course_utils.train import StepOutput, fit


def _l1_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    holder = nn.Module()
    holder.weight = nn.Parameter(w.clone())
    prune.l1_unstructured(holder, "weight", amount=sparsity)
    return holder.weight_mask


@pytest.mark.parametrize("shape,sparsity", [((20,), 0.5), ((23,), 0.3), ((16, 8, 3, 3), 0.8), ((64, 32), 0.95),
                                            ((10,), 0.999), ((7, 5), 1.0), ((10,), 0.04), ((6, 6), 0.0)])
def test_fine_grained_mask_is_l1_unstructured_without_ties(shape, sparsity):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    mask = fine_grained_mask(w, sparsity)
    assert mask.dtype == w.dtype and mask.shape == w.shape
    assert torch.equal(mask, _l1_mask(w, sparsity))
    assert int((mask == 0).sum()) == round(sparsity * w.numel())


def test_fine_grained_mask_removes_every_tie_at_the_threshold():
    w = torch.tensor([0.1, -0.1, 0.1, 0.5, 0.7, -0.9])
    mask = fine_grained_mask(w, 0.34)  # k = 2, but three magnitudes equal the 2nd smallest
    assert mask.tolist() == [0, 0, 0, 1, 1, 1]
    assert int((_l1_mask(w, 0.34) == 0).sum()) == 2  # torch removes exactly k
    with pytest.raises(ValueError):
        fine_grained_mask(w, 1.5)


def _net_and_batch():
    g = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net, torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)


def test_masked_step_keeps_pruned_weights_at_zero_and_matches_the_pruner():
    net, x, y = _net_and_batch()
    masks = {n: (p.abs() > p.abs().median()).float() for n, p in net.named_parameters() if p.ndim == 2}
    ref = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    ref.load_state_dict(net.state_dict())
    for name, m in ref.named_modules():
        if isinstance(m, nn.Linear):
            prune.custom_from_mask(m, "weight", masks[f"{name}.weight"])
    pruner = ThresholdPruner(ref, 0.0)
    with torch.no_grad():
        for n, p in net.named_parameters():
            p.mul_(masks.get(n, 1.0))
    opt = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.1)
    for step in (1, 2, 3):
        loss, logits = masked_step(net, masks, opt, x, y)
        assert logits.shape == (16, 3) and loss.ndim == 0 and not loss.requires_grad
        ref_opt.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        ref_opt.step()
        pruner(ref, step)
    for name, m in net.named_modules():
        if isinstance(m, nn.Linear):
            assert torch.equal(m.weight, effective_weight(ref.get_submodule(name)))
            assert bool((m.weight[masks[f"{name}.weight"] == 0] == 0).all())


def test_pruner_masks_are_the_live_buffers_keyed_by_parameter_name():
    net, _, _ = _net_and_batch()
    pruner = ThresholdPruner(net, 0.3)
    masks = pruner.masks()
    params = dict(net.named_parameters())
    assert set(masks) == {"0.weight_orig", "2.weight_orig"} <= set(params)
    assert masks["0.weight_orig"] is net[0].weight_mask


def test_fit_with_the_masked_step_gives_the_reference_run():
    """Stage 3 of notebook 02: fit(step_fn=masked_step wrapper) + ThresholdPruner == fit + ThresholdPruner."""
    def run(with_step: bool) -> dict[str, torch.Tensor]:
        net, x, y = _net_and_batch()
        loader = DataLoader(TensorDataset(x.repeat(4, 1), y.repeat(4)), batch_size=16)
        pruner = ThresholdPruner(net, 1.0, scale="std", ramp_steps=2)
        masks = pruner.masks()
        step_fn = (lambda model, batch, loss_fn, opt, params, clip:
                   StepOutput(*masked_step(model, masks, opt, batch.x, batch.y))) if with_step else None
        hist = fit(net, loader, epochs=2, lr=0.01, seed=0, progress=False, after_step=pruner, step_fn=step_fn)
        return {"loss": torch.tensor(hist["train_loss"]), **net.state_dict()}

    mine, ref = run(True), run(False)
    assert mine.keys() == ref.keys()
    assert all(torch.equal(mine[k], ref[k]) for k in ref)


def test_sensitivity_scan_with_a_mask_fn_is_the_l1_scan():
    net, x, y = _net_and_batch()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    default = sensitivity_scan(net, loader, [0.5, 0.9])
    custom = sensitivity_scan(net, loader, [0.5, 0.9], mask_fn=fine_grained_mask)
    assert default.equals(custom)
