"""Notebook 02_pruning: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        [
            'return (weight.abs() > tau).to(weight.dtype)',
        ],
        [
            'return (weight.abs() >= tau).float()',
        ],
    ],
    "ex2": [
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
        [
            'return weight.flatten(1).norm(p=p, dim=0)',
        ],
        [
            'return weight.norm(p=p, dim=1)',
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex4": [
        'return torch.stack([w.abs().pow(p).sum() ** (1 / p) for w in weight])',
    ],
}
