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
        [  # student and teacher swapped in F.kl_div
            ('return F.kl_div(F.log_softmax(teacher_logits / T, 1), F.softmax(student_logits / T, 1), '
             "reduction='batchmean') * T ** 2"),
        ],
        [  # log(softmax(...)) instead of log_softmax: -inf for large logits
            ('log_p_s = torch.log(F.softmax(student_logits / T, 1))\n'
             "return F.kl_div(log_p_s, F.softmax(teacher_logits / T, 1), reduction='batchmean') * T ** 2"),
        ],
    ],
    "ex2": [
        [
            'return F.mse_loss(regressor(student_feature), teacher_feature)',
        ],
        [
            'return ((regressor(student_feature) - teacher_feature.detach()) ** 2).sum()',
        ],
        [  # squared errors summed over the channels, averaged over the rest
            'return ((regressor(student_feature) - teacher_feature.detach()) ** 2).sum(-1).mean()',
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
        [  # both directions averaged (a symmetric CLIP loss)
            ('logits = emb_student @ emb_teacher.t() / temperature\n'
             'labels = torch.arange(len(logits))\n'
             'return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2'),
        ],
        [  # summed over the batch instead of averaged
            ('logits = emb_student @ emb_teacher.t() / temperature\n'
             "return F.cross_entropy(logits, torch.arange(len(logits)), reduction='sum')"),
        ],
    ],
    "ex4": [
        [  # the teacher left in train mode (its BatchNorm uses batch statistics and updates its running ones)
            ("with torch.no_grad():\n"
             "    t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "student.train()\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "loss = (weights['ce'] * F.cross_entropy(s_logits, y) + weights['kd'] * kd_loss(s_logits, t_logits, T)\n"
             "        + weights['hint'] * hint_loss(s_feats['features'], t_feats['features'], regressor))\n"
             "optimizer.zero_grad()\n"
             "loss.backward()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
        [  # the teacher runs with autograd and a KD written out without detaching it: gradients reach the teacher
            ("teacher.eval()\n"
             "t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "student.train()\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "p_t, log_p_s = F.softmax(t_logits / T, 1), F.log_softmax(s_logits / T, 1)\n"
             "kd = F.kl_div(log_p_s, p_t, reduction='batchmean') * T ** 2\n"
             "hint = F.mse_loss(regressor(s_feats['features']), t_feats['features'])\n"
             "loss = weights['ce'] * F.cross_entropy(s_logits, y) + weights['kd'] * kd + weights['hint'] * hint\n"
             "optimizer.zero_grad()\n"
             "loss.backward()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
        [  # the hint computed with the frozen teacher, under no_grad: the regressor never trains
            ("teacher.eval()\n"
             "student.train()\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "with torch.no_grad():\n"
             "    t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "    hint = hint_loss(s_feats['features'], t_feats['features'], regressor)\n"
             "loss = weights['ce'] * F.cross_entropy(s_logits, y) + weights['kd'] * kd_loss(s_logits, t_logits, T)\n"
             "loss = loss + weights['hint'] * hint\n"
             "optimizer.zero_grad()\n"
             "loss.backward()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
        [  # no zero_grad: the second step adds the first step's gradients to its own
            ("teacher.eval()\n"
             "with torch.no_grad():\n"
             "    t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "student.train()\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "loss = (weights['ce'] * F.cross_entropy(s_logits, y) + weights['kd'] * kd_loss(s_logits, t_logits, T)\n"
             "        + weights['hint'] * hint_loss(s_feats['features'], t_feats['features'], regressor))\n"
             "loss.backward()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
        [  # the terms added without their weights
            ("teacher.eval()\n"
             "with torch.no_grad():\n"
             "    t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "student.train()\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "loss = (F.cross_entropy(s_logits, y) + kd_loss(s_logits, t_logits, T)\n"
             "        + hint_loss(s_feats['features'], t_feats['features'], regressor))\n"
             "optimizer.zero_grad()\n"
             "loss.backward()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
        [  # the student left in eval mode (its BatchNorm uses the running statistics)
            ("teacher.eval()\n"
             "with torch.no_grad():\n"
             "    t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "loss = (weights['ce'] * F.cross_entropy(s_logits, y) + weights['kd'] * kd_loss(s_logits, t_logits, T)\n"
             "        + weights['hint'] * hint_loss(s_feats['features'], t_feats['features'], regressor))\n"
             "optimizer.zero_grad()\n"
             "loss.backward()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
        [  # the KD and hint weights swapped
            ("teacher.eval()\n"
             "with torch.no_grad():\n"
             "    t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "student.train()\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "loss = (weights['ce'] * F.cross_entropy(s_logits, y) + weights['hint'] * kd_loss(s_logits, t_logits, T)\n"
             "        + weights['kd'] * hint_loss(s_feats['features'], t_feats['features'], regressor))\n"
             "optimizer.zero_grad()\n"
             "loss.backward()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
        [  # gradients cleared between backward and step: nothing is updated
            ("teacher.eval()\n"
             "with torch.no_grad():\n"
             "    t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
             "student.train()\n"
             "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
             "loss = (weights['ce'] * F.cross_entropy(s_logits, y) + weights['kd'] * kd_loss(s_logits, t_logits, T)\n"
             "        + weights['hint'] * hint_loss(s_feats['features'], t_feats['features'], regressor))\n"
             "loss.backward()\n"
             "optimizer.zero_grad()\n"
             "optimizer.step()\n"
             "return loss.item()"),
        ],
    ],
    "ex5": [  # the design task: configurations the grader cannot measure
        ['my_recipe = ["nano", "crd", 20]'],
        ['my_recipe = {"size": "small", "method": "kd"}'],  # the teacher's own size
        ['my_recipe = {"size": "nano", "method": "crd", "epochs": 40}'],  # more than the recipe's 20 epochs
        ['my_recipe = {"size": "nano", "method": "kd", "temperature": 0.5, "kd_weight": 0.9}'],
        ['my_recipe = {"size": "nano", "method": "dkd"}'],  # a method the course does not train
    ],
}

ALTERNATIVES: dict[str, list[str]] = {
    "ex1": [
        ('p = F.softmax(teacher_logits / T, 1)\n'
         'log_q = F.log_softmax(student_logits / T, 1)\n'
         'return (p * (p.clamp_min(1e-30).log() - log_q)).sum(1).mean() * T * T'),
    ],
    "ex4": [  # the teacher's outputs detached instead of no_grad, the student first, float(), per-module zero_grad
        ("student.train()\n"
         "teacher.eval()\n"
         "s_logits, s_feats = forward_with_features(student, x, ['features'])\n"
         "t_logits, t_feats = forward_with_features(teacher, x, ['features'])\n"
         "t_logits, t_feat = t_logits.detach(), t_feats['features'].detach()\n"
         "hint = F.mse_loss(regressor(s_feats['features']), t_feat)\n"
         "kd = F.kl_div(F.log_softmax(s_logits / T, 1), F.softmax(t_logits / T, 1), reduction='batchmean') * T * T\n"
         "loss = weights['hint'] * hint + weights['kd'] * kd + weights['ce'] * F.cross_entropy(s_logits, y)\n"
         "student.zero_grad()\n"
         "regressor.zero_grad()\n"
         "loss.backward()\n"
         "optimizer.step()\n"
         "return float(loss)"),
    ],
    "ex5": ['my_recipe = {"size": "nano", "method": "kd", "temperature": 2.0, "kd_weight": 0.9}'],
}
