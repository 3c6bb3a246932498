"""The import contract of course_utils (run by `make lint`): four layers, each importing only from itself and the
layers below, and no import circle between modules.

- base: what everything may use (argument checks, threads and devices, paths, atomic files, the process pool);
- lessons: the techniques the notebooks teach (models and norms, training, data, metrics, statistics, plots,
  pruning, quantization, distillation, robustness, deployment);
- course: what builds and caches the course's models and runs its studies (checkpoints, baselines, recipe steps,
  the zoo, the sweep and its Dask cluster, the ablation, the results store, the deployment bench);
- notebooks: what runs, checks and grades the notebooks (runner, kernels, parameters, set-up, checks, widgets,
  the grader).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "course_utils"
LAYERS = {
    "base": ("args", "base", "paths", "storage", "parallel"),
    "lessons": ("norms", "modules", "models", "train", "data", "metrics", "stats", "plots", "pruning", "quantization",
                "distillation", "robustness", "deploy"),
    "course": ("checkpoints", "baselines", "steps", "designs", "zoo", "sweep", "cluster", "ablation", "results",
               "deploy.bench", "deploy.__main__"),
    "notebooks": ("running", "kernels", "params", "notebook", "checks", "widgets", "grading"),
}
RANK = {name: i for i, name in enumerate(LAYERS)}


def _module(path: Path) -> str:
    parts = path.with_suffix("").relative_to(PACKAGE).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer of a module (``"deploy.bench"``, ``"zoo"``, ...): its longest listed prefix decides."""
    best = max((p for names in LAYERS.values() for p in names if module == p or module.startswith(p + ".")),
               key=len, default=None)
    if best is None:
        raise AssertionError(f"course_utils.{module} is in no layer of tests/test_layers.py: add it to one")
    return next(layer for layer, names in LAYERS.items() if best in names)


def imports() -> dict[str, set[str]]:
    """Every module's imports of other course_utils modules (top-level and inside functions alike)."""
    out: dict[str, set[str]] = defaultdict(set)
    known = {_module(p) for p in PACKAGE.rglob("*.py")}
    for path in PACKAGE.rglob("*.py"):
        mod = _module(path)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join([*base, node.module] if node.module else base)
                targets = [f"{stem}.{a.name}".strip(".") if f"{stem}.{a.name}".strip(".") in known else stem
                           for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_utils."):
                targets = [node.module[len("course_utils."):]]
            elif isinstance(node, ast.Import):
                targets = [a.name[len("course_utils."):] for a in node.names if a.name.startswith("course_utils.")]
            out[mod].update(t for t in targets if t and t != mod and t in known)
    return out


def test_every_module_is_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        if _module(path):
            layer_of(_module(path))


def test_no_module_imports_a_higher_layer():
    wrong = [f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})" for a, bs in imports().items() for b in bs
             if a and RANK[layer_of(b)] > RANK[layer_of(a)]]
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_circle():
    graph = imports()
    # a package imports its own submodules (its __init__ re-exports them): not a circle of concerns
    edges = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_contract_catches_a_violation(monkeypatch):
    """A lesson that imports the grader, and a circle, are both reported (the check can fail)."""
    fake = imports()
    fake["models"] = {*fake["models"], "grading"}
    fake["train"] = {*fake["train"], "models"}
    fake["models"] = {*fake["models"], "train"}
    monkeypatch.setattr(sys.modules[__name__], "imports", lambda: fake)
    try:
        test_no_module_imports_a_higher_layer()
    except AssertionError as e:
        assert "models (lessons) imports grading (notebooks)" in str(e)
    else:
        raise AssertionError("a lesson importing the grader went unnoticed")
    try:
        test_no_import_circle()
    except AssertionError as e:
        assert "models" in str(e) and "train" in str(e)
    else:
        raise AssertionError("a circle went unnoticed")
