"""The ``mixed-budget`` design task (notebook 03): bits read as a literal, checked before any work, sized and measured
exactly as notebook 03's mixed-precision section quantizes (course_utils.quantization), against its two targets."""

from __future__ import annotations

import pytest

from course_utils import designs
from course_utils import quantization as Q
from course_utils.designs import mixed_budget as M
from course_utils.metrics import accuracy
from course_utils.models import build_model

UNIFORM3 = {name: 3 for name in M.layer_names()}


def test_the_layers_are_the_quantizable_layers_and_the_budget_is_stated_in_bits_and_kb():
    model = build_model("vit", "dyt")
    assert M.layer_names() == list(Q.quantizable_layers(model)) == list(Q.weight_sizes(model))
    n = sum(Q.weight_sizes(model).values())
    assert M.budget_kb() == round(M.BUDGET_BITS * n / 8 / 1024, 1)
    assert f"{M.budget_kb():g} kB" in M.MIXED_BUDGET.summary and f"{M.BUDGET_BITS:g} bits" in M.MIXED_BUDGET.summary
    assert M.size_kb(UNIFORM3, Q.weight_sizes(model)) > M.budget_kb()  # uniform 3 bits does not fit


def test_the_size_counts_bits_times_weights_and_leaves_left_out_layers_at_8_bits():
    sizes = Q.weight_sizes(build_model("vit", "dyt"))
    n = sum(sizes.values())
    assert M.size_kb({}, sizes) == pytest.approx(n / 1024)  # 8 bits: one byte a weight
    assert M.size_kb(UNIFORM3, sizes) == pytest.approx(3 * n / 8 / 1024)
    assert M.size_kb({"head": 2}, sizes) == pytest.approx((n - sizes["head"] * 6 / 8) / 1024)


@pytest.mark.parametrize("config, needle", [
    ([3] * 26, "non-empty dict"), ({}, "non-empty dict"), ({"blocks.9.attn.q": 3}, "not quantizable layers"),
    ({"blocks.0.norm1": 3}, "not quantizable layers"), ({"head": 1}, "whole numbers from 2 to 8"),
    ({"head": 9}, "whole numbers from 2 to 8"), ({"head": 3.0}, "whole numbers from 2 to 8"),
    ({"head": True}, "whole numbers from 2 to 8"), ({"head": "4"}, "whole numbers from 2 to 8"),
])
def test_a_bad_configuration_is_refused_before_any_work(config, needle):
    with pytest.raises(ValueError, match=needle):
        designs.evaluate("mixed-budget", config, smoke=True)


def test_measuring_quantizes_like_section_7_and_is_deterministic():
    config = UNIFORM3 | {"blocks.3.mlp.fc1": 2, "blocks.3.mlp.fc2": 2, "patch_embed": 8}
    first = designs.evaluate("mixed-budget", config, smoke=True, split="dev")
    assert designs.evaluate("mixed-budget", config, smoke=True, split="dev").measured == first.measured
    dense, data = designs.baseline(True)
    qm = Q.set_bits(Q.fake_quantize_model(dense, 8), config, None)
    xy = designs.split_data(data, "dev")
    assert first.measured["drop_points"] == pytest.approx(100 * (accuracy(dense, xy) - accuracy(qm, xy)))
    sizes = Q.weight_sizes(qm)
    assert first.measured["average_bits"] == pytest.approx(Q.average_bits({n: config[n] for n in sizes}, sizes))
    assert first.measured["images"] == len(xy[1]) and len(first.targets) == 2


def test_uniform_3_bits_earns_nothing_for_the_size_and_a_mixed_assignment_under_budget_earns_it_all():
    uniform = designs.evaluate("mixed-budget", UNIFORM3, smoke=True, split="held-out")
    assert uniform.targets[0].value == pytest.approx(uniform.targets[0].zero_at) and uniform.targets[0].score == 0
    mixed = {n: 2 if "mlp" in n or "blocks.3" in n else 3 for n in M.layer_names()}  # 2.4 bits on average
    result = designs.evaluate("mixed-budget", mixed, smoke=True, split="held-out")
    assert result.measured["size_kb"] < M.budget_kb() and result.targets[0].score == 1.0
    assert 0 <= result.fraction <= 1


def test_the_design_reads_the_literal_the_notebook_writes():
    source = "# DESIGN: mixed-budget (4 points)\nmy_bits = {'head': 4, 'blocks.0.mlp.fc1': 2}\n"
    config = designs.read_config(source, M.MIXED_BUDGET.variable)
    assert M.check(config) == {"head": 4, "blocks.0.mlp.fc1": 2}
