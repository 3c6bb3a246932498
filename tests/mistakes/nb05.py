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
        [  # x.numpy() scaled in place: it shares memory with x, so the caller's image changes
            ('counts = x.numpy()\n'
             'counts *= photons\n'
             'return torch.from_numpy(rng.poisson(counts) / photons).float().clamp(0, 1)'),
        ],
        [  # torch.poisson: the generator passed in is never used, so the draw is not reproducible
            'return (torch.poisson(x * photons) / photons).clamp(0, 1)',
        ],
        [  # the photon counts not divided by photons
            'return torch.from_numpy(rng.poisson(x.numpy() * photons)).float().clamp(0, 1)',
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
        [  # half-open bins [b / n, (b + 1) / n): a confidence on an edge goes up, and 1.0 falls in no bin
            ('conf, pred = probs.max(1)\n'
             'correct = (pred == labels).float()\n'
             'ece = 0.0\n'
             'for b in range(n_bins):\n'
             '    m = (conf >= b / n_bins) & (conf < (b + 1) / n_bins)\n'
             '    if m.any():\n'
             '        ece += m.float().mean().item() * abs(correct[m].mean().item() - conf[m].mean().item())\n'
             'return float(ece)'),
        ],
        [  # the signed gap: over- and underconfident bins cancel
            ('conf, pred = probs.max(1)\n'
             'correct = (pred == labels).float()\n'
             'ece = 0.0\n'
             'for b in range(n_bins):\n'
             '    m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n'
             '    if m.any():\n'
             '        ece += m.float().mean().item() * (correct[m].mean().item() - conf[m].mean().item())\n'
             'return float(ece)'),
        ],
        [  # the bins weighted by their count instead of their fraction of the examples
            ('conf, pred = probs.max(1)\n'
             'correct = (pred == labels).float()\n'
             'ece = 0.0\n'
             'for b in range(n_bins):\n'
             '    m = (conf > b / n_bins) & (conf <= (b + 1) / n_bins)\n'
             '    if m.any():\n'
             '        ece += m.sum().item() * abs(correct[m].mean().item() - conf[m].mean().item())\n'
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
        [  # the softmax over the batch (dim=0) instead of over the classes
            'return logits.softmax(0).max(1).values',
            'return T * torch.logsumexp(logits / T, dim=1)',
        ],
        [  # the temperature factor in front of the logsumexp forgotten
            'return logits.softmax(1).max(1).values',
            'return torch.logsumexp(logits / T, dim=1)',
        ],
        [  # log(sum(exp(...))) written out: it overflows for large logits
            'return logits.softmax(1).max(1).values',
            'return T * torch.log(torch.exp(logits / T).sum(1))',
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
        [  # roc_curve with its default drop_intermediate=True: the threshold needed can be dropped
            ('s = -torch.cat([id_scores, ood_scores]).double().numpy()\n'
             'is_ood = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]\n'
             'fpr, tpr, _ = roc_curve(is_ood, s)\n'
             'return float(fpr[np.argmax(tpr >= 0.95)])'),
        ],
        [  # tpr > 0.95: the threshold at exactly 95% is skipped
            ('s = -torch.cat([id_scores, ood_scores]).double().numpy()\n'
             'is_ood = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]\n'
             'fpr, tpr, _ = roc_curve(is_ood, s, drop_intermediate=False)\n'
             'return float(fpr[np.argmax(tpr > 0.95)])'),
        ],
        [  # the FPR interpolated along the ROC curve at TPR 0.95, not read at a real threshold
            ('s = -torch.cat([id_scores, ood_scores]).double().numpy()\n'
             'is_ood = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]\n'
             'fpr, tpr, _ = roc_curve(is_ood, s, drop_intermediate=False)\n'
             'return float(np.interp(0.95, tpr, fpr))'),
        ],
        [  # a sweep one example at a time: tied ID images after the 95% OOD one are not flagged with it
            ('scores = torch.cat([ood_scores, id_scores])\n'
             'is_ood = torch.cat([torch.ones(len(ood_scores)), torch.zeros(len(id_scores))])\n'
             'tp = fp = 0\n'
             'for i in torch.argsort(scores, stable=True).tolist():\n'
             '    if is_ood[i]:\n'
             '        tp += 1\n'
             '    else:\n'
             '        fp += 1\n'
             '    if tp >= 0.95 * len(ood_scores):\n'
             '        break\n'
             'return fp / len(id_scores)'),
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
