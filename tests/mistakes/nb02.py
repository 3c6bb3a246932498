"""Notebook 02_pruning: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

# Exercise 5: the reference's structure with one part wrong at a time.
_PAIR = """def conv_like(src, weight, bias):
    new = nn.Conv2d(weight.shape[1], weight.shape[0], src.kernel_size, src.stride, src.padding, src.dilation,
                    bias=bias is not None)
    new.load_state_dict({{"weight": weight}} | ({{"bias": bias}} if bias is not None else {{}}))
    return new

def new_norm(norm):
    if isinstance(norm, nn.BatchNorm2d):
        return nn.BatchNorm2d(len(keep), eps=norm.eps, momentum=norm.momentum)
    return DynamicTanh(len(keep), channels_last=False)

def sliced(norm):
    mid = new_norm(norm)
    mid.load_state_dict({{k: v if k in ("alpha", "num_batches_tracked") else v[keep]
                         for k, v in norm.state_dict().items()}})
    return mid.train(norm.training)

def affine_only(norm, copy_alpha=True):
    mid = new_norm(norm)
    with torch.no_grad():
        mid.weight.copy_(norm.weight[keep])
        mid.bias.copy_(norm.bias[keep])
        if copy_alpha and hasattr(norm, "alpha"):
            mid.alpha.copy_(norm.alpha)
    return mid.train(norm.training)

return {small}, {mid}, {after}"""
_SMALL = "conv_like(conv, conv.weight[keep], None if conv.bias is None else conv.bias[keep])"
_AFTER = "conv_like(next_conv, next_conv.weight[:, keep], next_conv.bias)"
_MID = "sliced(norm)"

# Exercise 6: a copy of the module whose layers are replaced, with one part wrong at a time.
_HEADS = """d = attn.head_dim
rows = (keep[:, None] * d + torch.arange(d)).flatten()
new = copy.deepcopy(attn)
for name in {linears}:
    old = getattr(attn, name)
    lin = nn.Linear(old.in_features, len(rows))
    lin.load_state_dict({{"weight": old.weight[rows], "bias": old.bias[rows]}})
    setattr(new, name, lin)
{proj}
{count}
return new"""
_PROJ = """new.proj = nn.Linear(len(rows), attn.proj.out_features)
new.proj.load_state_dict({"weight": attn.proj.weight[:, rows], "bias": attn.proj.bias})"""
_COUNT = """new.num_heads = len(keep)
new.head_mask = attn.head_mask[keep].clone()"""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        ['return (weight >= tau).to(weight.dtype)'],
        [
            'return (weight.abs() > tau).to(weight.dtype)',
        ],
        [
            'return (weight.abs() >= tau).float()',
        ],
    ],
    "ex2": [
        ['flat = torch.cat([w.detach().abs().flatten() for w in weights])\n'
         'return float(torch.quantile(flat, sparsity))'],
        [
            ('flat = torch.cat([w.abs().flatten() for w in weights])\n'
             'k = int(sparsity * flat.numel())\n'
             'return float(torch.kthvalue(flat, k).values) if k > 0 else 0.0'),
        ],
        [
            ('flat = torch.cat([w.flatten() for w in weights])\n'
             'k = int(round(sparsity * flat.numel()))\n'
             'return float(torch.kthvalue(flat, k).values) if k > 0 else 0.0'),
        ],
    ],
    "ex3": [
        ['frac = min(1.0, max(0.0, (step - start_step) / total_steps))\n'
         'return initial_sparsity + (final_sparsity - initial_sparsity) * frac'],
        [
            ('frac = min(1.0, max(0.0, (step - start_step) / total_steps))\n'
             'return initial_sparsity + (final_sparsity - initial_sparsity) * frac ** 3'),
        ],
        [
            ('frac = max(0.0, (step - start_step) / total_steps)\n'
             'return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3'),
        ],
    ],
    "ex4": [
        ['return weight.detach().flatten(1).abs().sum(dim=1)'],
        [
            'return weight.flatten(1).norm(p=p, dim=0)',
        ],
        [
            'return weight.norm(p=p, dim=1)',
        ],
    ],
    "ex5": [
        [  # the next conv's input channels not sliced
            _PAIR.format(after="copy.deepcopy(next_conv)", small=_SMALL, mid=_MID),
        ],
        [  # the next conv sliced on its output dim
            _PAIR.format(after="conv_like(next_conv, next_conv.weight[keep], next_conv.bias[keep])", small=_SMALL,
                         mid=_MID),
        ],
        [  # the norm not sliced
            _PAIR.format(after=_AFTER, small=_SMALL, mid="copy.deepcopy(norm)"),
        ],
        [  # BatchNorm's running statistics not sliced (a new BatchNorm2d's are zeros and ones)
            _PAIR.format(after=_AFTER, small=_SMALL, mid="affine_only(norm)"),
        ],
        [  # the conv's bias forgotten
            _PAIR.format(after=_AFTER, small="conv_like(conv, conv.weight[keep], None)", mid=_MID),
        ],
        [  # DyT's alpha left at its initial value
            _PAIR.format(after=_AFTER, small=_SMALL, mid="affine_only(norm, copy_alpha=False)"),
        ],
    ],
    "ex6": [
        [  # only q sliced
            _HEADS.format(linears='("q",)', proj=_PROJ, count=_COUNT),
        ],
        [  # proj's input not sliced
            _HEADS.format(linears='("q", "k", "v")', proj="", count=_COUNT),
        ],
        [  # head count not updated
            _HEADS.format(linears='("q", "k", "v")', proj=_PROJ,
                          count="new.head_mask = attn.head_mask[keep].clone()"),
        ],
        [  # head_dim changed instead of the head count
            _HEADS.format(linears='("q", "k", "v")', proj=_PROJ, count="new.head_dim = len(rows) // new.num_heads"),
        ],
        [  # head_mask not sliced
            _HEADS.format(linears='("q", "k", "v")', proj=_PROJ, count="new.num_heads = len(keep)"),
        ],
        [  # rows taken with a stride (row j of every head) instead of each head's contiguous block
            _HEADS.format(linears='("q", "k", "v")', proj=_PROJ, count=_COUNT).replace(
                "(keep[:, None] * d + torch.arange(d)).flatten()",
                "(torch.arange(d)[:, None] * attn.num_heads + keep).flatten()"),
        ],
    ],
    "ex7": [
        ['my_sparsities = [0.8] * 26'],
        ['my_sparsities = {"blocks.0.attn.qkv": 0.8, "blocks.0.mlp.fc1": 0.9}'],
        ['my_sparsities = {"blocks.0.mlp.fc1": 1.0, "blocks.0.mlp.fc2": 0.9}'],
    ],
    "ex-step": [
        [  # masks never applied
            ('logits = model(x)\n'
             'loss = nn.functional.cross_entropy(logits, y)\n'
             'optimizer.zero_grad()\n'
             'loss.backward()\n'
             'optimizer.step()\n'
             'return loss.detach(), logits.detach()'),
        ],
        [  # masks applied before the step only: AdamW's momentum regrows the pruned weights
            ('params = dict(model.named_parameters())\n'
             'with torch.no_grad():\n'
             '    for name, mask in masks.items():\n'
             '        params[name].mul_(mask)\n'
             'logits = model(x)\n'
             'loss = nn.functional.cross_entropy(logits, y)\n'
             'optimizer.zero_grad()\n'
             'loss.backward()\n'
             'optimizer.step()\n'
             'return loss.detach(), logits.detach()'),
        ],
        [  # the gradient masked instead of the weights: momentum and weight decay still move them
            ('logits = model(x)\n'
             'loss = nn.functional.cross_entropy(logits, y)\n'
             'optimizer.zero_grad()\n'
             'loss.backward()\n'
             'params = dict(model.named_parameters())\n'
             'for name, mask in masks.items():\n'
             '    params[name].grad.mul_(mask)\n'
             'optimizer.step()\n'
             'return loss.detach(), logits.detach()'),
        ],
        [  # zero_grad forgotten: gradients accumulate across steps
            ('logits = model(x)\n'
             'loss = nn.functional.cross_entropy(logits, y)\n'
             'loss.backward()\n'
             'optimizer.step()\n'
             'params = dict(model.named_parameters())\n'
             'with torch.no_grad():\n'
             '    for name, mask in masks.items():\n'
             '        params[name].mul_(mask)\n'
             'return loss.detach(), logits.detach()'),
        ],
        [  # zero_grad after backward: the step sees no gradient
            ('logits = model(x)\n'
             'loss = nn.functional.cross_entropy(logits, y)\n'
             'loss.backward()\n'
             'optimizer.zero_grad()\n'
             'optimizer.step()\n'
             'params = dict(model.named_parameters())\n'
             'with torch.no_grad():\n'
             '    for name, mask in masks.items():\n'
             '        params[name].mul_(mask)\n'
             'return loss.detach(), logits.detach()'),
        ],
    ],
    "ex-fine": [
        [  # ranked by signed value instead of magnitude
            ('k = int(round(sparsity * weight.numel()))\n'
             'if k == 0:\n'
             '    return torch.ones_like(weight)\n'
             'threshold = weight.detach().flatten().kthvalue(k).values\n'
             'return (weight.detach() > threshold).to(weight.dtype)'),
        ],
        [  # int() truncates the count instead of round()
            ('magnitude = weight.detach().abs()\n'
             'k = int(sparsity * weight.numel())\n'
             'if k == 0:\n'
             '    return torch.ones_like(weight)\n'
             'threshold = magnitude.flatten().kthvalue(k).values\n'
             'return (magnitude > threshold).to(weight.dtype)'),
        ],
        [  # >= keeps the k-th smallest: one weight too few removed
            ('magnitude = weight.detach().abs()\n'
             'k = int(round(sparsity * weight.numel()))\n'
             'if k == 0:\n'
             '    return torch.ones_like(weight)\n'
             'threshold = magnitude.flatten().kthvalue(k).values\n'
             'return (magnitude >= threshold).to(weight.dtype)'),
        ],
        [  # kept and removed swapped
            ('magnitude = weight.detach().abs()\n'
             'k = int(round(sparsity * weight.numel()))\n'
             'if k == 0:\n'
             '    return torch.zeros_like(weight)\n'
             'threshold = magnitude.flatten().kthvalue(k).values\n'
             'return (magnitude <= threshold).to(weight.dtype)'),
        ],
        [  # sparsity 0 not handled: kthvalue(0) fails
            ('magnitude = weight.detach().abs()\n'
             'k = int(round(sparsity * weight.numel()))\n'
             'threshold = magnitude.flatten().kthvalue(k).values\n'
             'return (magnitude > threshold).to(weight.dtype)'),
        ],
        [  # a bool mask: not the weight's dtype
            ('magnitude = weight.detach().abs()\n'
             'k = int(round(sparsity * weight.numel()))\n'
             'if k == 0:\n'
             '    return torch.ones_like(weight, dtype=torch.bool)\n'
             'return magnitude > magnitude.flatten().kthvalue(k).values'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex7": [  # a uniform design, written over several lines: measurable, whatever it scores
        ('my_sparsities = {\n'
         '    "blocks.0.mlp.fc1": 0.9,\n'
         '    "blocks.1.mlp.fc1": 0.9,\n'
         '}'),
    ],
    "ex4": [
        'return torch.stack([w.abs().pow(p).sum() ** (1 / p) for w in weight])',
    ],
    "ex5": [
        ('small, mid, after = (copy.deepcopy(m) for m in (conv, norm, next_conv))\n'
         'small.weight = nn.Parameter(conv.weight.detach()[keep])\n'
         'if conv.bias is not None:\n'
         '    small.bias = nn.Parameter(conv.bias.detach()[keep])\n'
         'after.weight = nn.Parameter(next_conv.weight.detach()[:, keep])\n'
         'small.out_channels = after.in_channels = len(keep)\n'
         'for name in ("weight", "bias", "running_mean", "running_var"):\n'
         '    value = getattr(norm, name, None)\n'
         '    if value is not None:\n'
         '        part = value.detach()[keep]\n'
         '        setattr(mid, name, nn.Parameter(part) if isinstance(value, nn.Parameter) else part)\n'
         'if isinstance(mid, nn.BatchNorm2d):\n'
         '    mid.num_features = len(keep)\n'
         'else:\n'
         '    mid.normalized_shape = (len(keep),)\n'
         'return small, mid, after'),
    ],
    "ex6": [
        ('d = attn.head_dim\n'
         'rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep.tolist()])\n'
         'new = copy.deepcopy(attn)\n'
         'for name, out_dim in (("q", 0), ("k", 0), ("v", 0), ("proj", 1)):\n'
         '    old = getattr(attn, name)\n'
         '    w = old.weight.detach().index_select(out_dim, rows)\n'
         '    b = old.bias.detach()[rows] if out_dim == 0 else old.bias.detach()\n'
         '    lin = nn.Linear(w.shape[1], w.shape[0])\n'
         '    lin.load_state_dict({"weight": w, "bias": b})\n'
         '    setattr(new, name, lin)\n'
         'new.num_heads = len(keep)\n'
         'new.head_mask = attn.head_mask[keep].clone()\n'
         'return new'),
    ],
    "ex-step": [
        ('out = model(x)\n'
         'loss = torch.nn.functional.cross_entropy(out, y)\n'
         'optimizer.zero_grad(set_to_none=False)\n'
         'loss.backward()\n'
         'optimizer.step()\n'
         'with torch.no_grad():\n'
         '    for name, p in model.named_parameters():\n'
         '        if name in masks:\n'
         '            p.data *= masks[name]\n'
         'return loss.detach(), out.detach()'),
    ],
    "ex-fine": [
        ('k = round(sparsity * weight.numel())\n'
         'mask = torch.ones(weight.numel(), dtype=weight.dtype)\n'
         'mask[weight.detach().abs().flatten().argsort()[:k]] = 0\n'
         'return mask.view_as(weight)'),
    ],
}
