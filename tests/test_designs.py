"""Design tasks: configurations read as literals, checked before any work, measured against their targets, graded."""

from __future__ import annotations

import pytest
import torch
from design_grading import grade_design_answers

from course_utils import designs
from course_utils.data import get_data, labels_of
from course_utils.designs.pruning_budget import kept_percent, layer_names, prune_layers
from course_utils.models import build_model
from course_utils.pruning import prunable_layers

BLOCKS = {f"blocks.{b}.{layer}": 0.8 for b in range(4)
          for layer in ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2")}


def test_read_config_takes_a_literal_and_never_runs_code():
    assert designs.read_config("# mine\nmy_sparsities = {'head': 0.5}\n", "my_sparsities") == {"head": 0.5}
    for source, needle in (("my_sparsities = {k: 0.5 for k in ['head']}", "written out as a literal"),
                           ("my_sparsities = __import__('os').system('true')", "written out as a literal"),
                           ("other = {}", "assign `my_sparsities = ...` exactly once"),
                           ("my_sparsities = {}\nmy_sparsities = {}", "exactly once"),
                           ("my_sparsities = {", "not valid Python")):
        with pytest.raises(ValueError, match=needle):
            designs.read_config(source, "my_sparsities")


def test_targets_score_linearly_between_the_limit_and_zero():
    assert designs.Target("kept", 20, 25, 50).score == 1.0
    assert designs.Target("kept", 37.5, 25, 50).score == pytest.approx(0.5)
    assert designs.Target("kept", 60, 25, 50).score == 0.0
    result = designs.DesignResult((designs.Target("a", 1, 2, 3), designs.Target("b", 2.5, 2, 3, " pt")), {})
    assert result.fraction == pytest.approx(0.75)
    assert result.feedback() == "a: 1.0 (target at most 2: met); b: 2.5 pt (target at most 2 pt: missed by 0.5 pt)"


@pytest.mark.parametrize("config, needle", [
    ([0.5], "non-empty dict"), ({}, "non-empty dict"), ({"blocks.9.attn.q": 0.5}, "not prunable layers"),
    ({"head": 1.0}, r"in \[0, 1\)"), ({"head": True}, r"in \[0, 1\)"), ({"head": "0.5"}, r"in \[0, 1\)"),
])
def test_a_bad_configuration_is_refused_before_any_work(config, needle):
    with pytest.raises(ValueError, match=needle):
        designs.evaluate("prune-budget", config, smoke=True)
    with pytest.raises(ValueError, match="design='nope' is not valid"):
        designs.evaluate("nope", {}, smoke=True)


def test_the_two_halves_split_the_test_set_evenly_by_class():
    data = get_data("digits", smoke=True)
    dev, held = designs.split_indices(data, "dev"), designs.split_indices(data, "held-out")
    assert not set(dev.tolist()) & set(held.tolist()) and len(dev) + len(held) == data.info.test_size
    y = labels_of(data.test_loader)
    assert (torch.bincount(y[dev], minlength=10) - torch.bincount(y[held], minlength=10)).abs().max() <= 1


def test_pruning_the_named_layers_matches_torch_prune_and_counts_what_is_kept():
    model = prune_layers(build_model("vit", "dyt"), BLOCKS | {"head": 0.5})
    layers = prunable_layers(model)
    assert layer_names() == list(layers)
    for name in BLOCKS:
        w = layers[name].weight
        assert int((w == 0).sum()) == round(0.8 * w.numel())
    total = sum(m.weight.numel() for m in layers.values())
    zeros = sum(round(0.8 * layers[n].weight.numel()) for n in BLOCKS) + round(0.5 * layers["head"].weight.numel())
    assert kept_percent(model) == pytest.approx(100 * (total - zeros) / total)


def test_every_task_gets_its_own_copy_of_the_baseline():
    first, data = designs.baseline(True)
    for p in first.parameters():
        p.requires_grad_(False)  # what distilling from it as a teacher does
    again, data_again = designs.baseline(True)
    assert again is not first and data_again is data
    assert all(p.requires_grad for p in again.parameters())
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_measuring_is_deterministic_and_keeps_the_sparsity():
    first = designs.evaluate("prune-budget", BLOCKS, smoke=True, split="dev")
    again = designs.evaluate("prune-budget", BLOCKS, smoke=True, split="dev")
    assert first.measured == again.measured and len(first.targets) == 2
    assert first.measured["kept_percent"] < 25 and 0 <= first.fraction <= 1


def test_the_grader_measures_the_written_configuration(tmp_path):
    rows = grade_design_answers(tmp_path, "prune-budget", "my_sparsities", BLOCKS,
                                {"ann": repr(BLOCKS), "bob": "{k: 0.9 for k in ['head']}"})
    ann, bob = rows["ann", "1 design"], rows["bob", "1 design"]
    expected = designs.evaluate("prune-budget", BLOCKS, smoke=True, split="held-out")
    assert float(ann["points"]) == round(4 * expected.fraction, 2) and ann["message"] == expected.feedback()
    assert bob["points"] == "0" and "written out as a literal" in bob["message"]
    assert rows["bob", "1"]["status"] == "passed"  # the check only asks for a dict; the grader asks for a literal
