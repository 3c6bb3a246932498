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
        [  # population standard deviation (ddof=0)
            ('d = np.asarray(a, float) - np.asarray(b, float)\n'
             'half = sps.t.ppf(0.5 + level / 2, len(d) - 1) * d.std() / math.sqrt(len(d))\n'
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
        [  # Hochberg's step-up: everything up to the largest p-value under its bar is rejected
            ('p = np.asarray(p, dtype=float)\n'
             "order = np.argsort(p, kind='stable')\n"
             'ok = np.nonzero(p[order] <= alpha / (len(p) - np.arange(len(p))))[0]\n'
             'reject = np.zeros(len(p), dtype=bool)\n'
             'if len(ok):\n'
             '    reject[order[:ok.max() + 1]] = True\n'
             'return reject'),
        ],
        [  # the decisions returned in sorted order, not in the order given
            ('p = np.asarray(p, dtype=float)\n'
             "ok = np.sort(p, kind='stable') <= alpha / (len(p) - np.arange(len(p)))\n"
             'return np.cumprod(ok).astype(bool)'),
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
        [  # rows and columns swapped (index='norm', columns='setting')
            ("rows = store[(store.notebook == '02') & (store.technique == 'unstructured one-shot + fine-tune')\n"
             "             & (store.metric == 'accuracy')]\n"
             "return rows.pivot_table(index='norm', columns='setting', values='value')"),
        ],
        [  # no filter on the notebook: notebook 03's rows of the same technique are mixed in
            ("rows = store[(store.technique == 'unstructured one-shot + fine-tune') & (store.metric == 'accuracy')]\n"
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
        [  # the cost direction flipped: a dearer model counted as better
            ('cost, value = np.asarray(cost, float), np.asarray(value, float)\n'
             'return np.array([not ((cost >= c) & (value >= v) & ((cost > c) | (value > v))).any() for c, v '
             'in zip(cost, value)])'),
        ],
        [  # a sweep by cost keeping only a strictly better value: the second of two identical points is dropped
            ('cost, value = np.asarray(cost, float), np.asarray(value, float)\n'
             'keep, best = np.zeros(len(cost), dtype=bool), -np.inf\n'
             "for i in np.argsort(cost, kind='stable'):\n"
             '    if value[i] > best:\n'
             '        keep[i], best = True, value[i]\n'
             'return keep'),
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
