"""Notebook 04_distillation: plausible wrong solutions (each must fail with a message naming the mistake) and
correct alternatives (each must pass), keyed by exercise cell id. A solution is a list of code blocks, one per
``### BEGIN SOLUTION`` block of the cell, written without indentation."""

WRONG: dict[str, list[list[str]]] = {
    "ex1": [
        [
            ('return F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), '
             "reduction='mean') * T ** 2"),
        ],
        [
            ('return F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), '
             "reduction='batchmean')"),
        ],
    ],
    "ex2": [
        [
            'return F.mse_loss(regressor(student_feature), teacher_feature)',
        ],
        [
            'return ((regressor(student_feature) - teacher_feature.detach()) ** 2).sum()',
        ],
    ],
    "ex3": [
        [
            ('logits = emb_teacher @ emb_student.t() / temperature\n'
             'return F.cross_entropy(logits, torch.arange(len(logits)))'),
        ],
        [
            ('logits = emb_student @ emb_teacher.t()\n'
             'return F.cross_entropy(logits, torch.arange(len(logits)))'),
        ],
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex1": [
        ('p = F.softmax(teacher_logits / T, 1)\n'
         'log_q = F.log_softmax(student_logits / T, 1)\n'
         'return (p * (p.clamp_min(1e-30).log() - log_q)).sum(1).mean() * T * T'),
    ],
}
