"""Notebook 06_edge_deployment: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        [
            ("return {'max_abs_diff': (deployed - reference).abs().max().item(), 'cosine': "
             "F.cosine_similarity(deployed.flatten(), reference.flatten(), dim=0).item(), 'agreement': "
             '(deployed.argmax(1) == reference.argmax(1)).float().mean().item()}'),
        ],
        [
            ("return {'max_abs_diff': (deployed - reference).abs().max().item(), 'cosine': "
             "F.cosine_similarity(deployed, reference, dim=1).mean().item(), 'agreement': (deployed.argmax(0) "
             '== reference.argmax(0)).float().mean().item()}'),
        ],
        [  # the mean absolute difference instead of the largest
            ("return {'max_abs_diff': (deployed - reference).abs().mean().item(), 'cosine': "
             "F.cosine_similarity(deployed, reference, dim=1).mean().item(), 'agreement': "
             '(deployed.argmax(1) == reference.argmax(1)).float().mean().item()}'),
        ],
        [  # 0-d tensors returned, without .item()
            ("return {'max_abs_diff': (deployed - reference).abs().max(), 'cosine': "
             "F.cosine_similarity(deployed, reference, dim=1).mean(), 'agreement': "
             '(deployed.argmax(1) == reference.argmax(1)).float().mean()}'),
        ],
        [  # the agreement as a count of images, not a fraction
            ("return {'max_abs_diff': (deployed - reference).abs().max().item(), 'cosine': "
             "F.cosine_similarity(deployed, reference, dim=1).mean().item(), 'agreement': "
             'float((deployed.argmax(1) == reference.argmax(1)).sum().item())}'),
        ],
    ],
    "ex2": [
        [
            ('if self.position >= len(self.images):\n'
             '    return None\n'
             'batch = self.images[self.position:self.position + self.batch_size]\n'
             'self.position += self.batch_size\n'
             'return {self.input_name: batch}'),
            'self.position = 0',
        ],
        [
            ('batch = self.images[self.position:self.position + self.batch_size]\n'
             'self.position = (self.position + self.batch_size) % len(self.images)\n'
             'return {self.input_name: batch.numpy().astype(np.float32)}'),
            'self.position = 0',
        ],
        [  # the last, partial batch dropped
            ('if self.position + self.batch_size > len(self.images):\n'
             '    return None\n'
             'batch = self.images[self.position:self.position + self.batch_size]\n'
             'self.position += self.batch_size\n'
             'return {self.input_name: batch.numpy().astype(np.float32)}'),
            'self.position = 0',
        ],
        [  # the images' dtype kept (float64 here), not cast to float32
            ('if self.position >= len(self.images):\n'
             '    return None\n'
             'batch = self.images[self.position:self.position + self.batch_size]\n'
             'self.position += self.batch_size\n'
             'return {self.input_name: batch.numpy()}'),
            'self.position = 0',
        ],
        [  # rewind sets a local variable, not self.position
            ('if self.position >= len(self.images):\n'
             '    return None\n'
             'batch = self.images[self.position:self.position + self.batch_size]\n'
             'self.position += self.batch_size\n'
             'return {self.input_name: batch.numpy().astype(np.float32)}'),
            'position = 0  # noqa: F841',
        ],
    ],
    "ex3": [
        [
            ("ok = deployments[deployments.size_kb <= max_kb].dropna(subset=['accuracy'])\n"
             'return None if ok.empty else ok.accuracy.idxmax()'),
        ],
        [
            ('ok = deployments[(deployments.size_kb < max_kb) & (deployments.ms_b1 < max_ms)]\n'
             "ok = ok.dropna(subset=['accuracy'])\n"
             'return None if ok.empty else ok.accuracy.idxmax()'),
        ],
        [  # idxmax on a tie in accuracy: the first row listed, not the smaller deployment
            ('ok = deployments[(deployments.size_kb <= max_kb) & (deployments.ms_b1 <= max_ms)]\n'
             "ok = ok.dropna(subset=['accuracy'])\n"
             'return None if ok.empty else ok.accuracy.idxmax()'),
        ],
        [  # rows without an accuracy kept
            ('ok = deployments[(deployments.size_kb <= max_kb) & (deployments.ms_b1 <= max_ms)]\n'
             'if ok.empty:\n'
             '    return None\n'
             "return ok.sort_values(['accuracy', 'size_kb'], ascending=[False, True]).index[0]"),
        ],
        [  # sorted ascending: the least accurate deployment that fits
            ('ok = deployments[(deployments.size_kb <= max_kb) & (deployments.ms_b1 <= max_ms)]\n'
             "ok = ok.dropna(subset=['accuracy'])\n"
             'if ok.empty:\n'
             '    return None\n'
             "return ok.sort_values(['accuracy', 'size_kb']).index[0]"),
        ],
    ],
    "ex4": [
        [  # diag(g) W: the rows scaled (only a square layer, like q, k and v, lets it run)
            ('with torch.no_grad():\n'
             '    new_linear = nn.Linear(linear.in_features, linear.out_features)\n'
             '    new_linear.weight.copy_(linear.weight * dyt.weight[:, None])\n'
             '    new_linear.bias.copy_(linear.weight @ dyt.bias + linear.bias)\n'
             'return fold.ScaledTanh(dyt.alpha), new_linear'),
        ],
        [  # the DyT's bias added as it is, not through W
            ('with torch.no_grad():\n'
             '    new_linear = nn.Linear(linear.in_features, linear.out_features)\n'
             '    new_linear.weight.copy_(linear.weight * dyt.weight)\n'
             '    new_linear.bias.copy_(linear.bias + dyt.bias)\n'
             'return fold.ScaledTanh(dyt.alpha), new_linear'),
        ],
        [  # alpha moved into W, a plain tanh left
            ('with torch.no_grad():\n'
             '    new_linear = nn.Linear(linear.in_features, linear.out_features)\n'
             '    new_linear.weight.copy_(linear.weight * dyt.weight * dyt.alpha)\n'
             '    new_linear.bias.copy_(linear.weight @ dyt.bias + linear.bias)\n'
             'return nn.Tanh(), new_linear'),
        ],
        [  # g applied twice
            ('with torch.no_grad():\n'
             '    new_linear = nn.Linear(linear.in_features, linear.out_features)\n'
             '    new_linear.weight.copy_(linear.weight * dyt.weight ** 2)\n'
             '    new_linear.bias.copy_(linear.weight @ dyt.bias + linear.bias)\n'
             'return fold.ScaledTanh(dyt.alpha), new_linear'),
        ],
        [  # the DyT returned as it is: its weight and bias now act twice
            ('with torch.no_grad():\n'
             '    new_linear = nn.Linear(linear.in_features, linear.out_features)\n'
             '    new_linear.weight.copy_(linear.weight * dyt.weight)\n'
             '    new_linear.bias.copy_(linear.weight @ dyt.bias + linear.bias)\n'
             'return dyt, new_linear'),
        ],
        [  # folded in place: the DyT loses its weight before q's neighbours k and v are folded
            ('with torch.no_grad():\n'
             '    linear.bias += linear.weight @ dyt.bias\n'
             '    linear.weight *= dyt.weight\n'
             '    dyt.weight.fill_(1.0)\n'
             '    dyt.bias.zero_()\n'
             'return dyt, linear'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex4": [  # diag(g) as a matrix, the Linear copied, a tanh part written by hand
        ('import copy\n'
         '\n'
         'class TanhPart(nn.Module):\n'
         '    def __init__(self, alpha):\n'
         '        super().__init__()\n'
         '        self.alpha = nn.Parameter(alpha.detach().clone())\n'
         '    def forward(self, x):\n'
         '        return torch.tanh(self.alpha * x)\n'
         'new_linear = copy.deepcopy(linear)\n'
         'with torch.no_grad():\n'
         '    new_linear.weight.copy_(linear.weight @ torch.diag(dyt.weight))\n'
         '    new_linear.bias.copy_(linear.bias + linear.weight @ dyt.bias)\n'
         'return TanhPart(dyt.alpha), new_linear'),
    ],
}
