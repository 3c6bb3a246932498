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
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
}
