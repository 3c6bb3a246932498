"""Every exercise's check catches the mistakes students really make, graded by the real grader.

For each exercise of the series: two plausible wrong solutions (those the teaching-quality review named among them)
must fail, and correct alternatives that differ from the reference must pass. The reference and the stub are covered
by ``python -m course_utils.grading validate`` (full marks and zero), which CI runs too.
Each solution is a list of code blocks, one per ``### BEGIN SOLUTION`` block of the cell, written without indentation.
"""

from __future__ import annotations

import textwrap

import nbformat
import pytest

from course_utils import grading
from course_utils.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"

WRONG: dict[str, dict[str, list[list[str]]]] = {
    "01_dyt_baseline.ipynb": {
        "ex1": [["mu = x.mean(-1, keepdim=True)\n"
                 "return (x - mu) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias"],
                ["mu = x.mean(-1, keepdim=True)\nsd = ((x - mu) ** 2).mean(-1, keepdim=True).sqrt()\n"
                 "return (x - mu) / (sd + eps) * weight + bias"]],
        "ex2": [["return torch.tanh(self.alpha * x) * self.weight + self.bias"],
                ["x = torch.tanh(x)\nif self.channels_last:\n    return x * self.weight + self.bias\n"
                 "return x * self.weight[:, None, None] + self.bias[:, None, None]"]],
        "ex3": [["for name, child in module.named_children():\n    if isinstance(child, nn.LayerNorm):\n"
                 "        setattr(module, name, MyDynamicTanh(child.normalized_shape[-1]))\nreturn module"],
                ["if isinstance(module, nn.LayerNorm):\n    return MyDynamicTanh(module.normalized_shape[-1])\n"
                 "for name, child in module.named_children():\n"
                 "    setattr(module, name, my_convert_ln_to_dyt(child))"]],
    },
    "02_pruning.ipynb": {
        "ex1": [["return (weight.abs() > tau).to(weight.dtype)"], ["return (weight.abs() >= tau).float()"]],
        "ex2": [["flat = torch.cat([w.abs().flatten() for w in weights])\nk = int(sparsity * flat.numel())\n"
                 "return float(torch.kthvalue(flat, k).values) if k > 0 else 0.0"],
                ["flat = torch.cat([w.flatten() for w in weights])\nk = int(round(sparsity * flat.numel()))\n"
                 "return float(torch.kthvalue(flat, k).values) if k > 0 else 0.0"]],
        "ex3": [["frac = min(1.0, max(0.0, (step - start_step) / total_steps))\n"
                 "return initial_sparsity + (final_sparsity - initial_sparsity) * frac ** 3"],
                ["frac = max(0.0, (step - start_step) / total_steps)\n"
                 "return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3"]],
        "ex4": [["return weight.flatten(1).norm(p=p, dim=0)"], ["return weight.norm(p=p, dim=1)"]],
    },
    "03_quantization.ipynb": {
        "ex1": [["lo, hi = x.min().item(), x.max().item()\neps = torch.finfo(torch.float32).eps\nif symmetric:\n"
                 "    return max(max(-lo, hi) / (2 ** (bits - 1) - 1), eps), 0\n"
                 "scale = max((hi - lo) / (2 ** bits - 1), eps)\n"
                 "return scale, int(min(max(-round(lo / scale), 0), 2 ** bits - 1))"],
                ["lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)\nif symmetric:\n"
                 "    return max(-lo, hi) / (2 ** (bits - 1) - 1), 0\nscale = max((hi - lo) / (2 ** bits - 1), "
                 "torch.finfo(torch.float32).eps)\nreturn scale, int(min(max(-round(lo / scale), 0), 2 ** bits - 1))"]],
        "ex2": [["return (torch.round(x / scale) + zero_point).to(torch.int32)",
                 "return (q.float() - zero_point) * scale"],
                ["qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n"
                 "return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)",
                 "return (q.float() - zero_point) * scale"]],
        "ex3": [["qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n"
                 "x_hat = (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale\n"
                 "return x_hat.detach() + x - x.detach()"],
                ["qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n"
                 "return (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale"]],
    },
    "04_distillation.ipynb": {
        "ex1": [["return F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
                 "reduction='mean') * T ** 2"],
                ["return F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
                 "reduction='batchmean')"]],
        "ex2": [["return F.mse_loss(regressor(student_feature), teacher_feature)"],
                ["return ((regressor(student_feature) - teacher_feature.detach()) ** 2).sum()"]],
        "ex3": [["logits = emb_teacher @ emb_student.t() / temperature\n"
                 "return F.cross_entropy(logits, torch.arange(len(logits)))"],
                ["logits = emb_student @ emb_teacher.t()\nreturn F.cross_entropy(logits, torch.arange(len(logits)))"]],
    },
    "05_robustness_ood.ipynb": {
        "ex1": [["return torch.from_numpy(rng.poisson(x.numpy() * photons) / photons).float()"],
                ["noise = rng.normal(0, 1, x.shape) * (x.numpy() / photons) ** 0.5\n"
                 "return torch.from_numpy(x.numpy() + noise).float().clamp(0, 1)"]],
        "ex2": [["conf, pred = probs.max(1)\ncorrect = (pred == labels).float()\ngaps = []\nfor b in range(n_bins):\n"
                 "    m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n    if m.any():\n"
                 "        gaps.append(abs(correct[m].mean().item() - conf[m].mean().item()))\n"
                 "return float(sum(gaps) / len(gaps))"],
                ["conf = probs.gather(1, labels[:, None]).squeeze(1)\ncorrect = (probs.argmax(1) == labels).float()\n"
                 "ece = 0.0\nfor b in range(n_bins):\n    m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n"
                 "    if m.any():\n        ece += m.float().mean().item() * abs(correct[m].mean().item() - "
                 "conf[m].mean().item())\nreturn float(ece)"]],
        "ex3": [["return logits.max(dim=1).values", "return T * torch.logsumexp(logits / T, dim=1)"],
                ["return logits.softmax(1).max(1).values", "return -T * torch.logsumexp(logits / T, dim=1)"]],
        "ex4": [["s = torch.cat([id_scores, ood_scores]).double().numpy()\n"
                 "is_id = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]\n"
                 "fpr, tpr, _ = roc_curve(is_id, s)\n"
                 "return float(fpr[np.argmax(tpr >= 0.95)])"],
                ["t = torch.sort(ood_scores).values[int(0.95 * len(ood_scores)) - 1]\n"
                 "return float((id_scores < t).float().mean())"]],
    },
    "06_edge_deployment.ipynb": {
        "ex1": [["return {'max_abs_diff': (deployed - reference).abs().max().item(), 'cosine': "
                 "F.cosine_similarity(deployed.flatten(), reference.flatten(), dim=0).item(), 'agreement': "
                 "(deployed.argmax(1) == reference.argmax(1)).float().mean().item()}"],
                ["return {'max_abs_diff': (deployed - reference).abs().max().item(), 'cosine': "
                 "F.cosine_similarity(deployed, reference, dim=1).mean().item(), 'agreement': "
                 "(deployed.argmax(0) == reference.argmax(0)).float().mean().item()}"]],
        "ex2": [["if self.position >= len(self.images):\n    return None\n"
                 "batch = self.images[self.position:self.position + self.batch_size]\n"
                 "self.position += self.batch_size\nreturn {self.input_name: batch}", "self.position = 0"],
                ["batch = self.images[self.position:self.position + self.batch_size]\n"
                 "self.position = (self.position + self.batch_size) % len(self.images)\n"
                 "return {self.input_name: batch.numpy().astype(np.float32)}", "self.position = 0"]],
        "ex3": [["ok = deployments[deployments.size_kb <= max_kb].dropna(subset=['accuracy'])\n"
                 "return None if ok.empty else ok.accuracy.idxmax()"],
                ["ok = deployments[(deployments.size_kb < max_kb) & (deployments.ms_b1 < max_ms)]\n"
                 "ok = ok.dropna(subset=['accuracy'])\nreturn None if ok.empty else ok.accuracy.idxmax()"]],
    },
    "07_ablation_summary.ipynb": {
        "ex1": [["r = sps.ttest_ind(a, b, equal_var=False).confidence_interval(level)\n"
                 "return float(np.mean(a) - np.mean(b)), float(r.low), float(r.high)"],
                ["d = np.asarray(a, float) - np.asarray(b, float)\n"
                 "half = 1.959964 * d.std(ddof=1) / math.sqrt(len(d))\n"
                 "return float(d.mean()), float(d.mean() - half), float(d.mean() + half)"]],
        "ex2": [["p = np.asarray(p, dtype=float)\nreturn p <= alpha / len(p)"],
                ["p = np.asarray(p, dtype=float)\nreject = np.zeros(len(p), dtype=bool)\n"
                 "for k, i in enumerate(np.argsort(p)):\n    reject[i] = p[i] <= alpha / (len(p) - k)\nreturn reject"]],
        "ex3": [["rows = store[(store.notebook == '02') & (store.technique == 'unstructured one-shot + fine-tune')]\n"
                 "return rows.pivot_table(index='setting', columns='norm', values='value')"],
                ["rows = store[(store.notebook == '02') & (store.metric == 'accuracy')]\n"
                 "return rows.pivot_table(index='setting', columns='norm', values='value')"]],
        "ex4": [["cost, value = np.asarray(cost, float), np.asarray(value, float)\n"
                 "return np.array([not ((cost < c) & (value > v)).any() for c, v in zip(cost, value)])"],
                ["cost, value = np.asarray(cost, float), np.asarray(value, float)\n"
                 "return np.array([not ((cost <= c) & (value >= v) & (np.arange(len(cost)) != i)).any() "
                 "for i, (c, v) in enumerate(zip(cost, value))])"]],
    },
}

#: Correct solutions that differ from the reference: a check must not reject them.
ALTERNATIVES: dict[str, dict[str, list[str]]] = {
    "01_dyt_baseline.ipynb": {
        "ex1": ["return F.layer_norm(x, x.shape[-1:], weight, bias, eps)"],
        "ex2": ["scale = self.weight if self.channels_last else self.weight.view(-1, 1, 1)\n"
                "shift = self.bias if self.channels_last else self.bias.view(-1, 1, 1)\n"
                "return scale * torch.tanh(self.alpha * x) + shift"],
        "ex3": ["if isinstance(module, nn.LayerNorm):\n    return DynamicTanh(module.normalized_shape)\n"
                "for name, child in list(module.named_children()):\n    new = my_convert_ln_to_dyt(child)\n"
                "    if new is not child:\n        setattr(module, name, new)\nreturn module"],
    },
    "02_pruning.ipynb": {"ex4": ["return torch.stack([w.abs().pow(p).sum() ** (1 / p) for w in weight])"]},
    "04_distillation.ipynb": {"ex1": ["p = F.softmax(teacher_logits / T, 1)\n"
                                      "log_q = F.log_softmax(student_logits / T, 1)\n"
                                      "return (p * (p.clamp_min(1e-30).log() - log_q)).sum(1).mean() * T * T"]},
    "07_ablation_summary.ipynb": {"ex2": ["p = np.asarray(p, dtype=float)\norder = np.argsort(p, kind='stable')\n"
                                          "ok = p[order] <= alpha / (len(p) - np.arange(len(p)))\n"
                                          "out = np.zeros(len(p), dtype=bool)\n"
                                          "out[order] = np.cumprod(ok).astype(bool)\nreturn out"]},
}


def _submission(layout, blocks: dict[str, list[str]]) -> nbformat.NotebookNode:
    """The released notebook with each exercise's stub lines replaced by the given blocks, in order."""
    nb = grading.student_notebook(layout)
    for cell in nb.cells:
        if cell.id not in blocks:
            continue
        lines, todo, out = cell.source.split("\n"), list(blocks[cell.id]), []
        for line in lines:
            if grading.STUB in line and todo:
                indent = line[: len(line) - len(line.lstrip())]
                out += textwrap.indent(todo.pop(0), indent).split("\n")
            else:
                out.append(line)
        assert not todo, f"{cell.id}: more solution blocks given than the cell has"
        cell.source = "\n".join(out)
    return nb


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory):
    base = tmp_path_factory.mktemp("exercises")
    subs = base / "submissions"
    for name in WRONG:
        layout = grading.instructor_layout(NOTEBOOKS / name)
        for k in (0, 1):
            path = subs / f"wrong{k + 1}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(_submission(layout, {cid: sols[k] for cid, sols in WRONG[name].items()}), path)
        alts = ALTERNATIVES.get(name)
        if alts:
            path = subs / "alternative" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(_submission(layout, alts), path)
    report = grading.grade(subs, base / "out", jobs=2, timeout_cell=120)
    return {(r.student, r.notebook, r.exercise): r for r in report.rows}


def _exercise_numbers(name: str) -> dict[str, str]:
    layout = grading.instructor_layout(NOTEBOOKS / name)
    return {e.cell_id: e.number for e in layout.exercises}


def test_every_exercise_has_two_wrong_solutions():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        ids = set(_exercise_numbers(path.name))
        missing = ids - set(WRONG.get(path.name, {}))
        assert not missing, f"{path.name}: wrong solutions missing for {missing}"


@pytest.mark.parametrize("name", list(WRONG))
def test_plausible_mistakes_fail_with_a_message(gradebook, name):
    numbers = _exercise_numbers(name)
    for student in ("wrong1", "wrong2"):
        for number in numbers.values():
            row = gradebook[student, name, number]
            assert row.status == "failed" and row.points == 0, \
                f"{name} exercise {number} ({student}): {row.status} — the check let this mistake pass"
            assert row.message and "NotImplementedError" not in row.message, \
                f"{name} exercise {number} ({student}): the failure must name the mistake, got {row.message!r}"


@pytest.mark.parametrize("name", list(ALTERNATIVES))
def test_correct_alternatives_pass(gradebook, name):
    numbers = _exercise_numbers(name)
    for cell_id in ALTERNATIVES[name]:
        row = gradebook["alternative", name, numbers[cell_id]]
        assert row.status == "passed", f"{name} exercise {numbers[cell_id]}: a correct alternative was rejected: " \
                                       f"{row.message}"
