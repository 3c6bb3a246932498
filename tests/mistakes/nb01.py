"""Notebook 01_dyt_baseline: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        [
            ('mu = x.mean(-1, keepdim=True)\n'
             'return (x - mu) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias'),
        ],
        [
            ('mu = x.mean(-1, keepdim=True)\n'
             'sd = ((x - mu) ** 2).mean(-1, keepdim=True).sqrt()\n'
             'return (x - mu) / (sd + eps) * weight + bias'),
        ],
        [  # normalized over the batch (dimension 0) instead of the channels
            ('mu = x.mean(0, keepdim=True)\n'
             'var = ((x - mu) ** 2).mean(0, keepdim=True)\n'
             'return (x - mu) / torch.sqrt(var + eps) * weight + bias'),
        ],
    ],
    "ex2": [
        [
            'return torch.tanh(self.alpha * x) * self.weight + self.bias',
        ],
        [
            ('x = torch.tanh(x)\n'
             'if self.channels_last:\n'
             '    return x * self.weight + self.bias\n'
             'return x * self.weight[:, None, None] + self.bias[:, None, None]'),
        ],
        [  # alpha read out with .item(): the parameter gets no gradient
            ('a = self.alpha.item()\n'
             'if self.channels_last:\n'
             '    return torch.tanh(a * x) * self.weight + self.bias\n'
             'return torch.tanh(a * x) * self.weight[:, None, None] + self.bias[:, None, None]'),
        ],
    ],
    "ex3": [
        [
            ('for name, child in module.named_children():\n'
             '    if isinstance(child, nn.LayerNorm):\n'
             '        setattr(module, name, MyDynamicTanh(child.normalized_shape[-1]))\n'
             'return module'),
        ],
        [
            ('if isinstance(module, nn.LayerNorm):\n'
             '    return MyDynamicTanh(module.normalized_shape[-1])\n'
             'for name, child in module.named_children():\n'
             '    setattr(module, name, my_convert_ln_to_dyt(child))'),
        ],
        [  # recurses into the children but never checks the module itself: a bare LayerNorm stays
            ('for name, child in module.named_children():\n'
             '    if isinstance(child, nn.LayerNorm):\n'
             '        setattr(module, name, MyDynamicTanh(child.normalized_shape[-1]))\n'
             '    else:\n'
             '        my_convert_ln_to_dyt(child)\n'
             'return module'),
        ],
        [  # named_modules() with setattr on the dotted name: the nested LayerNorms stay
            ('for name, m in list(module.named_modules()):\n'
             '    if isinstance(m, nn.LayerNorm):\n'
             '        setattr(module, name, MyDynamicTanh(m.normalized_shape[-1]))\n'
             'return module'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex1": [
        'return F.layer_norm(x, x.shape[-1:], weight, bias, eps)',
    ],
    "ex2": [
        ('scale = self.weight if self.channels_last else self.weight.view(-1, 1, 1)\n'
         'shift = self.bias if self.channels_last else self.bias.view(-1, 1, 1)\n'
         'return scale * torch.tanh(self.alpha * x) + shift'),
    ],
    "ex3": [
        ('if isinstance(module, nn.LayerNorm):\n'
         '    return DynamicTanh(module.normalized_shape)\n'
         'for name, child in list(module.named_children()):\n'
         '    new = my_convert_ln_to_dyt(child)\n'
         '    if new is not child:\n'
         '        setattr(module, name, new)\n'
         'return module'),
    ],
}
