"""Notebook 05_robustness_ood: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        [
            'return torch.from_numpy(rng.poisson(x.numpy() * photons) / photons).float()',
        ],
        [
            ('noise = rng.normal(0, 1, x.shape) * (x.numpy() / photons) ** 0.5\n'
             'return torch.from_numpy(x.numpy() + noise).float().clamp(0, 1)'),
        ],
    ],
    "ex2": [
        [
            ('conf, pred = probs.max(1)\n'
             'correct = (pred == labels).float()\n'
             'gaps = []\n'
             'for b in range(n_bins):\n'
             '    m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n'
             '    if m.any():\n'
             '        gaps.append(abs(correct[m].mean().item() - conf[m].mean().item()))\n'
             'return float(sum(gaps) / len(gaps))'),
        ],
        [
            ('conf = probs.gather(1, labels[:, None]).squeeze(1)\n'
             'correct = (probs.argmax(1) == labels).float()\n'
             'ece = 0.0\n'
             'for b in range(n_bins):\n'
             '    m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n'
             '    if m.any():\n'
             '        ece += m.float().mean().item() * abs(correct[m].mean().item() - conf[m].mean().item())\n'
             'return float(ece)'),
        ],
    ],
    "ex3": [
        [
            'return logits.max(dim=1).values',
            'return T * torch.logsumexp(logits / T, dim=1)',
        ],
        [
            'return logits.softmax(1).max(1).values',
            'return -T * torch.logsumexp(logits / T, dim=1)',
        ],
    ],
    "ex4": [
        [
            ('s = torch.cat([id_scores, ood_scores]).double().numpy()\n'
             'is_id = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]\n'
             'fpr, tpr, _ = roc_curve(is_id, s)\n'
             'return float(fpr[np.argmax(tpr >= 0.95)])'),
        ],
        [
            ('t = torch.sort(ood_scores).values[int(0.95 * len(ood_scores)) - 1]\n'
             'return float((id_scores < t).float().mean())'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
}
