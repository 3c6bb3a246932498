"""Notebook 07_ablation_summary: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        [
            ('r = sps.ttest_ind(a, b, equal_var=False).confidence_interval(level)\n'
             'return float(np.mean(a) - np.mean(b)), float(r.low), float(r.high)'),
        ],
        [
            ('d = np.asarray(a, float) - np.asarray(b, float)\n'
             'half = 1.959964 * d.std(ddof=1) / math.sqrt(len(d))\n'
             'return float(d.mean()), float(d.mean() - half), float(d.mean() + half)'),
        ],
    ],
    "ex2": [
        [
            ('p = np.asarray(p, dtype=float)\n'
             'return p <= alpha / len(p)'),
        ],
        [
            ('p = np.asarray(p, dtype=float)\n'
             'reject = np.zeros(len(p), dtype=bool)\n'
             'for k, i in enumerate(np.argsort(p)):\n'
             '    reject[i] = p[i] <= alpha / (len(p) - k)\n'
             'return reject'),
        ],
    ],
    "ex3": [
        [
            ("rows = store[(store.notebook == '02') & (store.technique == 'unstructured one-shot + fine-tune')]\n"
             "return rows.pivot_table(index='setting', columns='norm', values='value')"),
        ],
        [
            ("rows = store[(store.notebook == '02') & (store.metric == 'accuracy')]\n"
             "return rows.pivot_table(index='setting', columns='norm', values='value')"),
        ],
    ],
    "ex4": [
        [
            ('cost, value = np.asarray(cost, float), np.asarray(value, float)\n'
             'return np.array([not ((cost < c) & (value > v)).any() for c, v in zip(cost, value)])'),
        ],
        [
            ('cost, value = np.asarray(cost, float), np.asarray(value, float)\n'
             'return np.array([not ((cost <= c) & (value >= v) & (np.arange(len(cost)) != i)).any() '
             'for i, (c, v) in enumerate(zip(cost, value))])'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex2": [
        ('p = np.asarray(p, dtype=float)\n'
         "order = np.argsort(p, kind='stable')\n"
         'ok = p[order] <= alpha / (len(p) - np.arange(len(p)))\n'
         'out = np.zeros(len(p), dtype=bool)\n'
         'out[order] = np.cumprod(ok).astype(bool)\n'
         'return out'),
    ],
}
