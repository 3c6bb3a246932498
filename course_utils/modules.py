"""The module tree, handled one way everywhere: copy it, swap parts of it, look inside it.

Every technique of the course is a walk over ``model.named_modules()``. DyT conversion swaps norms, quantization
wraps Linear layers, low rank replaces them, deployment rewrites attention. Doing those walks with one helper each
is what lets techniques compose: a pruned model can be quantized, a distilled student pruned, anything exported.

- :func:`clone_model` is the one copy function (``copy.deepcopy`` fails right after ``torch.nn.utils.prune``).
- :func:`replace_modules` is the one module swap, in the spirit of torchao's ``quantize_(model, config, filter_fn)``.
- :func:`capture` records a named layer's inputs or outputs with hooks.
- :func:`effective_weight` is the weight a (possibly pruned) layer computes with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import prune

#: ``filter_fn(module, fqn) -> bool``: which modules a walk acts on (``fqn`` is the qualified name, "" for the root).
FilterFn = Callable[[nn.Module, str], bool]


def is_pruned(module: nn.Module, name: str = "weight") -> bool:
    """Whether ``module.<name>`` is reparametrized by ``torch.nn.utils.prune`` (``<name>_orig`` + ``<name>_mask``)."""
    return hasattr(module, name + "_orig") and hasattr(module, name + "_mask")


def effective_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The tensor ``module`` computes with, detached: ``<name>_orig * <name>_mask`` when pruned.

    ``module.weight`` of a pruned layer is refreshed only by the forward pre-hook, so right after a mask changes it
    is stale; the product is always current.
    """
    if is_pruned(module, name):
        return (getattr(module, name + "_orig") * getattr(module, name + "_mask")).detach()
    value = getattr(module, name, None)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{type(module).__name__} has no tensor named {name!r}")
    return value.detach()


def fold_masks(model: nn.Module) -> nn.Module:
    """``prune.remove`` every pruning reparametrization in place: masks become plain zeros in plain weights."""
    for m in model.modules():
        for pname in [n[:-5] for n, _ in m.named_parameters(recurse=False) if n.endswith("_orig")]:
            if hasattr(m, pname + "_mask"):
                prune.remove(m, pname)
    return model


def clone_model(model: nn.Module, fold: bool = False) -> nn.Module:
    """A deep copy of ``model`` that also works on pruned models; with ``fold`` the copy's masks are folded in.

    ``torch.nn.utils.prune`` stores the masked weight as a non-leaf tensor, which ``copy.deepcopy`` refuses
    ("Only Tensors created explicitly by the user ..."); the masked weights are detached for the copy and restored.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    stash = []
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            name = getattr(hook, "_tensor_name", None)
            if isinstance(hook, prune.BasePruningMethod) and isinstance(getattr(m, name, None), torch.Tensor):
                stash.append((m, name, getattr(m, name)))
                setattr(m, name, getattr(m, name).detach())
    try:
        new = copy.deepcopy(model)
    finally:
        for m, name, t in stash:
            setattr(m, name, t)
    return fold_masks(new) if fold else new


def _matcher(layers: Iterable[str] | FilterFn) -> FilterFn:
    if callable(layers):
        return layers
    names = set(layers)
    return lambda module, fqn: fqn in names


def replace_modules(model: nn.Module, fn: Callable[[nn.Module, str], nn.Module],
                    filter_fn: FilterFn | Iterable[str]) -> nn.Module:
    """Replace, in place, every module for which ``filter_fn(module, fqn)`` holds by ``fn(module, fqn)``.

    ``filter_fn`` may also be a collection of qualified names. A replaced module's children are not visited (so a
    wrapper is never wrapped again). Returns ``model``, or ``fn(model, "")`` when the root itself matches.
    """
    match = _matcher(filter_fn)
    if match(model, ""):
        return fn(model, "")

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            fqn = f"{prefix}.{name}" if prefix else name
            if match(child, fqn):
                setattr(parent, name, fn(child, fqn))
            else:
                walk(child, fqn)

    walk(model, "")
    return model


def find_modules(model: nn.Module, filter_fn: FilterFn | Iterable[str]) -> dict[str, nn.Module]:
    """The modules for which ``filter_fn(module, fqn)`` holds (or that are named), by qualified name."""
    match = _matcher(filter_fn)
    return {n: m for n, m in model.named_modules() if match(m, n)}


def of_type(*types: type[nn.Module]) -> FilterFn:
    """``filter_fn`` selecting modules of the given types, e.g. ``of_type(nn.Linear, nn.Conv2d)``."""
    return lambda module, fqn: isinstance(module, types)


@contextmanager
def capture(model: nn.Module, layers: Iterable[str] | FilterFn, kind: str = "output",
            detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record what the chosen layers receive (``kind="input"``, the first positional argument) or return
    (``kind="output"``) during the forward passes run inside the block; the dict maps qualified names to tensors.

    ``detach=False`` keeps the autograd graph (a distillation loss trains through a captured student feature).
    The hooks are removed when the block ends, even after an error.
    """
    if kind not in ("input", "output"):
        raise ValueError(f"kind={kind!r} is not valid; choose 'input' or 'output'")
    if not callable(layers):
        layers = list(dict.fromkeys(layers))
        known = dict(model.named_modules())
        missing = [n for n in layers if n not in known]
        if missing:
            some = [n for n in known if n and n.count(".") <= 1][:12]
            raise ValueError(f"layers {missing} are not submodules of {type(model).__name__}; e.g. {some}")
    targets = find_modules(model, layers)
    store: dict[str, torch.Tensor] = {}

    def keep(name: str, t: torch.Tensor) -> None:
        store[name] = t.detach() if detach else t

    handles = []
    try:
        for name, m in targets.items():
            if kind == "input":
                handles.append(m.register_forward_pre_hook(lambda mod, args, n=name: keep(n, args[0])))
            else:
                handles.append(m.register_forward_hook(lambda mod, args, out, n=name: keep(n, out)))
        yield store
    finally:
        for h in handles:
            h.remove()


def head_name(model: nn.Module) -> str | None:
    """Qualified name of the classifier ``head`` whose input is the penultimate feature; None when there is none."""
    try:
        model.get_submodule("head")
        return "head"
    except AttributeError:
        return None


def graph_owner(node: torch.fx.Node) -> tuple[str, str]:
    """The innermost module an exported graph's node came from: (qualified name, class name), ("", "") if none."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    name = path.split("@")[0].replace("L['self'].", "").replace("L__self___", "")
    return name, (cls if isinstance(cls, str) else cls.__name__).rsplit(".", 1)[-1]


def graph_linear(graph_module: torch.fx.GraphModule, name: str) -> torch.fx.Node:
    """The ``linear`` call of the module ``name`` in an exported (e.g. PT2E int8) graph."""
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and "linear" in str(node.target) and graph_owner(node)[0] == name:
            return node
    raise ValueError(f"the graph has no linear layer named {name!r}")


def graph_constant(graph_module: torch.fx.GraphModule, node: object) -> object:
    """The value of a node that depends on constants only (a weight and its dequantize), computed."""
    if not isinstance(node, torch.fx.Node):
        return node
    if node.op == "get_attr":
        value: object = graph_module
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value
    if node.op != "call_function":
        raise ValueError(f"node {node.name} depends on the input: not a constant")
    args = [graph_constant(graph_module, a) for a in node.args]
    return node.target(*args, **{k: graph_constant(graph_module, v) for k, v in node.kwargs.items()})


def head_linear(model: nn.Module) -> nn.Linear | None:
    """The classifier head as a plain fp32 ``nn.Linear`` (weights as the model computes with them), for eager and
    exported models alike; None when the model has no head."""
    name = head_name(model)
    if name is None:
        return None
    if not isinstance(model, torch.fx.GraphModule):
        return as_float_linear(model.get_submodule(name))
    node = graph_linear(model, name)
    w = graph_constant(model, node.args[1])
    b = graph_constant(model, node.args[2]) if len(node.args) > 2 else None
    out = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        out.weight.copy_(w.float())
        if b is not None:
            out.bias.copy_(b.float())
    return out


@torch.no_grad()
def graph_with_features(graph_module: torch.fx.GraphModule, head: str = "head") -> torch.fx.GraphModule:
    """A copy of an exported graph that returns ``(logits, features)``: the features are the (dequantized) input of
    the ``head`` layer, as :func:`capture` gives them for an eager model."""
    gm = copy.deepcopy(graph_module)
    feature = graph_linear(gm, head).args[0]
    output = next(n for n in gm.graph.nodes if n.op == "output")
    logits = output.args[0][0] if isinstance(output.args[0], (tuple, list)) else output.args[0]
    output.args = ((logits, feature),)
    info = getattr(gm.graph._codegen, "pytree_info", None)  # an exported graph unflattens its outputs by a spec
    if info is not None and info.out_spec is not None:
        gm.graph._codegen.pytree_info = info._replace(out_spec=torch.utils._pytree.tree_structure((0, 0)))
    gm.graph.lint()
    gm.recompile()
    return gm


def as_float_linear(module: nn.Module) -> nn.Linear:
    """A plain fp32 ``nn.Linear`` computing what a (possibly pruned, fake-quantized or int8) linear layer computes.

    Analyses that need a layer's matrix (ViM's principal subspace, say) then work on every model of the zoo.
    """
    inner = getattr(module, "layer", None)  # FakeQuantLayer
    if inner is not None and not isinstance(module, nn.Linear):
        weight = module.quantized_weight() if hasattr(module, "quantized_weight") else None
        base = as_float_linear(inner)
        if weight is not None:
            with torch.no_grad():
                base.weight.copy_(weight.detach().float())
        return base
    if not isinstance(module, nn.Linear):
        raise ValueError(f"{type(module).__name__} is not a linear layer")
    w, b = effective_weight(module), module.bias
    if type(w) is not torch.Tensor and hasattr(w, "dequantize"):  # a torchao int8 weight (tensor subclass)
        w = w.dequantize()
    out = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        out.weight.copy_(w.detach().float())
        if b is not None:
            out.bias.copy_(b.detach().float())
    return out
