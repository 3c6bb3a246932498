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
        [  # symmetric: max|x| divided by 2^(bits-1) (128 at 8 bits), the full signed range
            ('lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)\n'
             'eps = torch.finfo(torch.float32).eps\n'
             'if symmetric:\n'
             '    return max(max(-lo, hi) / 2 ** (bits - 1), eps), 0\n'
             'scale = max((hi - lo) / (2 ** bits - 1), eps)\n'
             'return scale, int(min(max(-round(lo / scale), 0), 2 ** bits - 1))'),
        ],
        [  # the range divided into 2^bits steps instead of 2^bits - 1
            ('lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)\n'
             'eps = torch.finfo(torch.float32).eps\n'
             'if symmetric:\n'
             '    return max(max(-lo, hi) / (2 ** (bits - 1) - 1), eps), 0\n'
             'scale = max((hi - lo) / 2 ** bits, eps)\n'
             'return scale, int(min(max(-round(lo / scale), 0), 2 ** bits - 1))'),
        ],
        [  # the zero point truncated by int() instead of rounded
            ('lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)\n'
             'eps = torch.finfo(torch.float32).eps\n'
             'if symmetric:\n'
             '    return max(max(-lo, hi) / (2 ** (bits - 1) - 1), eps), 0\n'
             'scale = max((hi - lo) / (2 ** bits - 1), eps)\n'
             'return scale, int(min(max(-lo / scale, 0), 2 ** bits - 1))'),
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
        [  # floor (truncation) instead of rounding to the nearest integer
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return torch.clamp(torch.floor(x / scale) + zero_point, qmin, qmax).to(torch.int32)'),
            'return (q.float() - zero_point) * scale',
        ],
        [  # the zero point forgotten in dequantize
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)'),
            'return q.float() * scale',
        ],
        [  # clamped before the zero point is added: the grid is shifted out of [qmin, qmax]
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return (torch.clamp(torch.round(x / scale), qmin, qmax) + zero_point).to(torch.int32)'),
            'return (q.float() - zero_point) * scale',
        ],
        [  # ties rounded up, floor(v + 0.5), instead of to even
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return torch.clamp(torch.floor(x / scale + 0.5) + zero_point, qmin, qmax).to(torch.int32)'),
            'return (q.float() - zero_point) * scale',
        ],
        [  # the zero point subtracted in quantize (and added back in dequantize): the grid moves the wrong way
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return torch.clamp(torch.round(x / scale) - zero_point, qmin, qmax).to(torch.int32)'),
            'return (q.float() + zero_point) * scale',
        ],
        [  # the zero point added in dequantize instead of subtracted
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)'),
            'return (q.float() + zero_point) * scale',
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
        [  # strict inequalities: values that land exactly on qmin or qmax lose their gradient
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'q = torch.round(x / scale) + zero_point\n'
             'x_hat = (torch.clamp(q, qmin, qmax) - zero_point) * scale\n'
             'inside = ((q > qmin) & (q < qmax)).to(x.dtype)\n'
             'return x_hat.detach() + x * inside - (x * inside).detach()'),
        ],
        [  # the zero point not subtracted before rescaling
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'q = torch.round(x / scale) + zero_point\n'
             'x_hat = torch.clamp(q, qmin, qmax) * scale\n'
             'inside = ((q >= qmin) & (q <= qmax)).to(x.dtype)\n'
             'return x_hat.detach() + x * inside - (x * inside).detach()'),
        ],
        [  # the mask multiplied onto the output: clamped values become 0 instead of the grid's end
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'q = torch.round(x / scale) + zero_point\n'
             'x_hat = (torch.clamp(q, qmin, qmax) - zero_point) * scale\n'
             'inside = ((q >= qmin) & (q <= qmax)).to(x.dtype)\n'
             'return (x_hat.detach() + x - x.detach()) * inside'),
        ],
        [  # the clamp on x before rounding: values up to half a step outside the range lose their gradient
            ('qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2 ** bits - 1)\n'
             'xc = torch.clamp(x, (qmin - zero_point) * scale, (qmax - zero_point) * scale)\n'
             'x_hat = (torch.round(xc / scale) + zero_point - zero_point) * scale\n'
             'return x_hat.detach() + xc - xc.detach()'),
        ],
    ],
    "ex4": [
        [  # only the last batch: the extremes are overwritten instead of kept running
            ('lo, hi, seen = float("inf"), float("-inf"), []\n'
             'for x in batches:\n'
             '    lo, hi = x.min().item(), x.max().item()\n'
             '    seen.append(x.flatten().double())\n'
             'if method == "percentile":\n'
             '    values = torch.cat(seen).numpy()\n'
             '    return float(np.percentile(values, 100 - q)), float(np.percentile(values, q))\n'
             'return lo, hi'),
        ],
        [  # the mean of per-batch percentiles instead of the percentiles of all values
            ('if method == "minmax":\n'
             '    return min(x.min().item() for x in batches), max(x.max().item() for x in batches)\n'
             'ranges = [np.percentile(x.numpy(), [100 - q, q]) for x in batches]\n'
             'lo, hi = np.mean(ranges, axis=0)\n'
             'return float(lo), float(hi)'),
        ],
        [  # one symmetric range from the percentile of |x|, although both tails are asked for
            ('values = torch.cat([x.flatten() for x in batches])\n'
             'if method == "minmax":\n'
             '    return values.min().item(), values.max().item()\n'
             'a = float(np.percentile(values.abs().numpy(), q))\n'
             'return -a, a'),
        ],
        [  # the nearest rank instead of linear interpolation between the two nearest ranks
            ('values = torch.cat([x.flatten() for x in batches])\n'
             'if method == "minmax":\n'
             '    return values.min().item(), values.max().item()\n'
             'n = values.numel()\n'
             'lo = torch.kthvalue(values, max(1, round(n * (100 - q) / 100))).values.item()\n'
             'hi = torch.kthvalue(values, max(1, round(n * q / 100))).values.item()\n'
             'return lo, hi'),
        ],
        [  # the range widened to contain 0 already in the observer
            ('values = torch.cat([x.flatten() for x in batches]).double()\n'
             'if method == "minmax":\n'
             '    return min(values.min().item(), 0.0), max(values.max().item(), 0.0)\n'
             'lo, hi = np.percentile(values.numpy(), [100 - q, q])\n'
             'return float(lo), float(hi)'),
        ],
    ],
    "ex5": [
        [  # the sums in int16: 8-bit products over 64 inputs overflow and wrap around
            ('acc = (q_x.to(torch.int16) - x_zp) @ q_w.to(torch.int16).T\n'
             'bias_scale = x_scale * w_scale\n'
             'acc = acc.to(torch.int32) + torch.round(b / bias_scale).to(torch.int32)\n'
             'info = torch.iinfo(q_x.dtype)\n'
             'q = torch.round(acc * (bias_scale / out_scale)) + out_zp\n'
             'return torch.clamp(q, info.min, info.max).to(q_x.dtype)'),
        ],
        [  # the zero points forgotten
            ('acc = q_x.to(torch.int32) @ q_w.to(torch.int32).T\n'
             'bias_scale = x_scale * w_scale\n'
             'acc = acc + torch.round(b / bias_scale).to(torch.int32)\n'
             'info = torch.iinfo(q_x.dtype)\n'
             'return torch.clamp(torch.round(acc * (bias_scale / out_scale)), info.min, info.max).to(q_x.dtype)'),
        ],
        [  # the bias added in float after rescaling, not quantized to int32
            ('acc = (q_x.to(torch.int32) - x_zp) @ q_w.to(torch.int32).T\n'
             'q = torch.round((acc * (x_scale * w_scale) + b) / out_scale) + out_zp\n'
             'info = torch.iinfo(q_x.dtype)\n'
             'return torch.clamp(q, info.min, info.max).to(q_x.dtype)'),
        ],
        [  # the bias quantized with the output's scale
            ('acc = (q_x.to(torch.int32) - x_zp) @ q_w.to(torch.int32).T\n'
             'acc = acc + torch.round(b / out_scale).to(torch.int32)\n'
             'q = torch.round(acc * (x_scale * w_scale / out_scale)) + out_zp\n'
             'info = torch.iinfo(q_x.dtype)\n'
             'return torch.clamp(q, info.min, info.max).to(q_x.dtype)'),
        ],
        [  # no clamp: .to(uint8) wraps around
            ('acc = (q_x.to(torch.int32) - x_zp) @ q_w.to(torch.int32).T\n'
             'bias_scale = x_scale * w_scale\n'
             'acc = acc + torch.round(b / bias_scale).to(torch.int32)\n'
             'return (torch.round(acc * (bias_scale / out_scale)) + out_zp).to(q_x.dtype)'),
        ],
        [  # truncation instead of rounding
            ('acc = (q_x.to(torch.int32) - x_zp) @ q_w.to(torch.int32).T\n'
             'bias_scale = x_scale * w_scale\n'
             'acc = acc + torch.round(b / bias_scale).to(torch.int32)\n'
             'q = (acc * (bias_scale / out_scale)).to(torch.int32) + out_zp\n'
             'info = torch.iinfo(q_x.dtype)\n'
             'return torch.clamp(q, info.min, info.max).to(q_x.dtype)'),
        ],
        [  # the sums in int8
            ('acc = (q_x.to(torch.int32) - x_zp).to(torch.int8) @ q_w.T\n'
             'bias_scale = x_scale * w_scale\n'
             'acc = acc.to(torch.int32) + torch.round(b / bias_scale).to(torch.int32)\n'
             'info = torch.iinfo(q_x.dtype)\n'
             'q = torch.round(acc * (bias_scale / out_scale)) + out_zp\n'
             'return torch.clamp(q, info.min, info.max).to(q_x.dtype)'),
        ],
        [  # ties rounded up (floor(v + 0.5)) instead of to even
            ('acc = (q_x.to(torch.int32) - x_zp) @ q_w.to(torch.int32).T\n'
             'bias_scale = x_scale * w_scale\n'
             'acc = acc + torch.round(b / bias_scale).to(torch.int32)\n'
             'q = torch.floor(acc * (bias_scale / out_scale) + 0.5) + out_zp\n'
             'info = torch.iinfo(q_x.dtype)\n'
             'return torch.clamp(q, info.min, info.max).to(q_x.dtype)'),
        ],
    ],
    "ex6": [
        [  # the bias forgotten
            ('a = dyt.weight.detach().abs().max().item()\n'
             'return -a, a'),
        ],
        [  # weight instead of |weight|
            ('w, b = dyt.weight.detach(), dyt.bias.detach()\n'
             'return (b - w).min().item(), (b + w).max().item()'),
        ],
        [  # alpha in the bound
            ('w, b = dyt.weight.detach(), dyt.bias.detach()\n'
             'reach = (dyt.alpha.detach() * w).abs()\n'
             'return (b - reach).min().item(), (b + reach).max().item()'),
        ],
        [  # a symmetric bound, -/+ max(|bias| + |weight|): it holds but is not the tightest
            ('a = (dyt.bias.detach().abs() + dyt.weight.detach().abs()).max().item()\n'
             'return -a, a'),
        ],
    ],
    "ex7": [
        ['my_bits = [3] * 26'],  # a list: which layer gets which bits?
        ['my_bits = {"blocks.0.norm1": 2, "blocks.0.mlp.fc1": 2}'],  # a DyT is not a quantizable layer
        ['my_bits = {"blocks.0.mlp.fc1": 1, "blocks.0.mlp.fc2": 2}'],  # 1 bit: below the grids of 2 to 8 bits
        ['my_bits = {"blocks.0.mlp.fc1": 2.5, "blocks.0.mlp.fc2": 2}'],  # a fractional width for one layer
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex7": [  # two layers lowered, the rest at 8 bits: measurable, whatever it scores
        'my_bits = {"blocks.0.mlp.fc1": 4, "blocks.1.mlp.fc1": 3}',
    ],
    "ex4": [  # torch only: running extremes with torch.minimum/maximum, torch.quantile in float64
        ('lo, hi, seen = None, None, []\n'
         'for x in batches:\n'
         '    lo = x.min() if lo is None else torch.minimum(lo, x.min())\n'
         '    hi = x.max() if hi is None else torch.maximum(hi, x.max())\n'
         '    seen.append(x.flatten().double())\n'
         'if method == "percentile":\n'
         '    qs = torch.tensor([1 - q / 100, q / 100], dtype=torch.float64)\n'
         '    lo, hi = torch.quantile(torch.cat(seen), qs)\n'
         'return lo.item(), hi.item()'),
    ],
    "ex5": [  # int64 sums and float64 arithmetic in another order; the zero point added before rounding
        ('acc = (q_x.long() - x_zp) @ q_w.long().T\n'
         'bias = torch.round(b.double() / x_scale / w_scale.double()).long()\n'
         'v = (acc + bias).double() * x_scale * w_scale.double() / out_scale\n'
         'info = torch.iinfo(q_x.dtype)\n'
         'return torch.round(v + out_zp).clamp(info.min, info.max).to(q_x.dtype)'),
    ],
    "ex6": [
        ('w, b = dyt.weight.detach(), dyt.bias.detach()\n'
         'return float(torch.min(b - w.abs())), float(torch.max(b + w.abs()))'),
    ],
}
