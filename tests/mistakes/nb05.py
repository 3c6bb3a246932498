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
    "ex5": [
        [  # one covariance per class (a quadratic discriminant), not one shared covariance
            ('scores = []\n'
             'for c in train_labels.unique():\n'
             '    fc = train_features[train_labels == c]\n'
             '    precision = torch.linalg.pinv(torch.cov(fc.T, correction=0), hermitian=True)\n'
             '    diff = test_features - fc.mean(0)\n'
             '    scores.append(((diff @ precision) * diff).sum(1))\n'
             'return -torch.stack(scores, 1).min(1).values'),
        ],
        [  # the covariance of all features around the global mean, not centred per class
            ('classes = train_labels.unique()\n'
             'means = torch.stack([train_features[train_labels == c].mean(0) for c in classes])\n'
             'precision = torch.linalg.pinv(torch.cov(train_features.T, correction=0), hermitian=True)\n'
             'diff = test_features[:, None, :] - means[None]\n'
             'return -((diff @ precision) * diff).sum(-1).min(1).values'),
        ],
        [  # the distance to the mean of all training features
            ('classes = train_labels.unique()\n'
             'means = torch.stack([train_features[train_labels == c].mean(0) for c in classes])\n'
             'centred = train_features - means[torch.searchsorted(classes, train_labels)]\n'
             'precision = torch.linalg.pinv(centred.T @ centred / len(centred), hermitian=True)\n'
             'diff = test_features - train_features.mean(0)\n'
             'return -((diff @ precision) * diff).sum(1)'),
        ],
        [  # the distance itself: higher = more OOD
            ('classes = train_labels.unique()\n'
             'means = torch.stack([train_features[train_labels == c].mean(0) for c in classes])\n'
             'centred = train_features - means[torch.searchsorted(classes, train_labels)]\n'
             'precision = torch.linalg.pinv(centred.T @ centred / len(centred), hermitian=True)\n'
             'diff = test_features[:, None, :] - means[None]\n'
             'return ((diff @ precision) * diff).sum(-1).min(1).values'),
        ],
        [  # the farthest class mean
            ('classes = train_labels.unique()\n'
             'means = torch.stack([train_features[train_labels == c].mean(0) for c in classes])\n'
             'centred = train_features - means[torch.searchsorted(classes, train_labels)]\n'
             'precision = torch.linalg.pinv(centred.T @ centred / len(centred), hermitian=True)\n'
             'diff = test_features[:, None, :] - means[None]\n'
             'return -((diff @ precision) * diff).sum(-1).max(1).values'),
        ],
        [  # torch.cov's default N - 1: right up to a factor
            ('classes = train_labels.unique()\n'
             'means = torch.stack([train_features[train_labels == c].mean(0) for c in classes])\n'
             'centred = train_features - means[torch.searchsorted(classes, train_labels)]\n'
             'precision = torch.linalg.pinv(torch.cov(centred.T), hermitian=True)\n'
             'diff = test_features[:, None, :] - means[None]\n'
             'return -((diff @ precision) * diff).sum(-1).min(1).values'),
        ],
        [  # inv of a covariance that can be singular
            ('classes = train_labels.unique()\n'
             'means = torch.stack([train_features[train_labels == c].mean(0) for c in classes])\n'
             'centred = train_features - means[torch.searchsorted(classes, train_labels)]\n'
             'precision = torch.linalg.inv(centred.T @ centred / len(centred))\n'
             'diff = test_features[:, None, :] - means[None]\n'
             'return -((diff @ precision) * diff).sum(-1).min(1).values'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex5": [  # sklearn's EmpiricalCovariance on the class-centred float32 features (its pinvh cuts float32 round-off)
        ('from sklearn.covariance import EmpiricalCovariance\n'
         'f, y, x = train_features.numpy(), train_labels.numpy(), test_features.numpy()\n'
         'means = np.stack([f[y == c].mean(0) for c in np.unique(y)])\n'
         'cov = EmpiricalCovariance(assume_centered=True).fit(f - means[np.searchsorted(np.unique(y), y)])\n'
         'return -torch.from_numpy(np.stack([cov.mahalanobis(x - m) for m in means], 1).min(1))'),
    ],
}
