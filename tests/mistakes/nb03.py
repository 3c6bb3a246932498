"""Notebook 03_quantization: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        [
            ('lo, hi = x.min().item(), x.max().item()\n'
             'eps = torch.finfo(torch.float32).eps\n'
             'if symmetric:\n'
             '    return max(max(-lo, hi) / (2 ** (bits - 1) - 1), eps), 0\n'
             'scale = max((hi - lo) / (2 ** bits - 1), eps)\n'
             'return scale, int(min(max(-round(lo / scale), 0), 2 ** bits - 1))'),
        ],
        [
            ('lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)\n'
             'if symmetric:\n'
             '    return max(-lo, hi) / (2 ** (bits - 1) - 1), 0\n'
             'scale = max((hi - lo) / (2 ** bits - 1), torch.finfo(torch.float32).eps)\n'
             'return scale, int(min(max(-round(lo / scale), 0), 2 ** bits - 1))'),
        ],
    ],
    "ex2": [
        [
            'return (torch.round(x / scale) + zero_point).to(torch.int32)',
            'return (q.float() - zero_point) * scale',
        ],
        [
            ('qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)'),
            'return (q.float() - zero_point) * scale',
        ],
    ],
    "ex3": [
        [
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'x_hat = (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale\n'
             'return x_hat.detach() + x - x.detach()'),
        ],
        [
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
}
