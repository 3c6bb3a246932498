"""The training step as a function: ``train.train_step`` (what ``fit`` calls) and ``distillation.distill_step`` (the
reference of notebook 04's exercise 4, which ``distill(step=...)`` runs)."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from course_utils.data import get_data
from course_utils.distillation import HintRegressor, distill, distill_step, forward_with_features, hint_loss, kd_loss
from course_utils.models import build_model
from course_utils.train import Batch, fit, make_optimizer, seed_everything, train_step


@pytest.fixture(scope="module")
def digits():
    return get_data("digits", batch_size=64, seed=0)


def _small(digits, n=256):
    return DataLoader(TensorDataset(*digits.train_loader.dataset[:n]), batch_size=64, shuffle=False)


def _vit(size="nano"):
    return build_model("vit", "dyt", 10, (1, 8, 8), size)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fit_takes_the_same_steps_as_the_loop_it_replaced(digits):
    """The loop body before the refactoring, written out: fit (default step and train_step passed explicitly)
    gives bit for bit the same weights and losses."""
    loader, epochs, lr, wd, clip = _small(digits), 2, 3e-3, 0.05, 0.5
    seed_everything(0)
    model = _vit()
    opt, sched = make_optimizer(list(model.parameters()), lr, wd, epochs * len(loader))
    losses = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), clip)
            opt.step()
            sched.step()
            total += loss.item() * len(y)
        losses.append(total / len(loader.dataset))
    for step_fn in (None, train_step):
        seed_everything(0)
        m = _vit()
        h = fit(m, loader, None, epochs=epochs, lr=lr, weight_decay=wd, grad_clip=clip, progress=False,
                step_fn=step_fn)
        torch.testing.assert_close(_state(m), _state(model), rtol=0, atol=0)
        assert h["train_loss"] == pytest.approx(losses, rel=1e-12)


def test_fit_runs_the_step_it_is_given(digits):
    calls = []

    def counting(model, batch, loss_fn, optimizer, params, grad_clip):
        calls.append((type(batch), grad_clip))
        return train_step(model, batch, loss_fn, optimizer, params, grad_clip)

    fit(_vit(), _small(digits, 128), None, epochs=2, grad_clip=1.0, progress=False, step_fn=counting)
    assert calls == [(Batch, 1.0)] * 4


@pytest.mark.parametrize("clip", [None, 0.05])
def test_distill_with_the_reference_step_is_the_objective(digits, clip):
    """``distill(step=distill_step)`` trains the student of the objective's loop with a live teacher: same weights,
    losses and accuracies (gradient clipping, which the step leaves to the loop, included)."""
    seed_everything(0)
    teacher = _vit("tiny").eval()
    loader, losses = _small(digits), {"ce": 0.5, "kd": 0.5, "hint": 3.0}
    runs = []
    for step in (None, distill_step):
        seed_everything(1)
        student = _vit()
        h = distill(student, teacher, loader, digits.test_loader, losses, epochs=2, temperature=2.0, lr=1e-2,
                    grad_clip=clip, cache_teacher=False, step=step, seed=1, progress=False)
        runs.append((_state(student), h))
    (ref, h_ref), (mine, h_mine) = runs
    torch.testing.assert_close(mine, ref)
    for k in ("train_loss", "train_acc", "test_acc", "test_loss", "lr"):
        assert h_mine[k] == pytest.approx(h_ref[k], rel=1e-5), k
    assert "loss_kd" in h_ref and "loss_kd" not in h_mine  # the step returns the total only
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_gradient_clipping_reaches_a_hand_written_step(digits):
    """The loop clips in a pre-hook of optimizer.step(): a step that knows nothing of clipping still gets it."""
    seed_everything(0)
    teacher = _vit("tiny").eval()
    norms = []

    def seen_norm(opt, args, kwargs):
        grads = [p.grad.norm() for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack(grads)).item())

    def step(student, teacher, regressor, optimizer, x, y, weights, temperature):
        hook = optimizer.register_step_pre_hook(seen_norm)  # runs after the loop's clipping hook
        try:
            return distill_step(student, teacher, regressor, optimizer, x, y, weights, temperature)
        finally:
            hook.remove()

    distill(_vit(), teacher, _small(digits, 128), losses={"ce": 0.5, "kd": 0.5, "hint": 3.0}, epochs=1,
            grad_clip=0.01, step=step, progress=False)
    assert len(norms) == 2 and all(n <= 0.01 * (1 + 1e-4) for n in norms)


def test_distill_step_freezes_the_teacher_and_trains_student_and_regressor():
    torch.manual_seed(0)
    teacher = build_model("cnn", "batchnorm", 10, (1, 8, 8), "small").train()  # BatchNorm: train mode would show
    student = build_model("cnn", "batchnorm", 10, (1, 8, 8), "tiny").eval()
    regressor = HintRegressor(64, 128)
    opt = torch.optim.SGD([*student.parameters(), *regressor.parameters()], lr=0.1)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    t0, s0, r0 = _state(teacher), _state(student), _state(regressor)
    weights = {"ce": 0.3, "kd": 0.7, "hint": 5.0}
    with torch.no_grad():
        tl, tf = forward_with_features(teacher.eval(), x, ["features"])
        sl, sf = forward_with_features(student.train(), x, ["features"])
        expected = (0.3 * F.cross_entropy(sl, y) + 0.7 * kd_loss(sl, tl, 2.0)
                    + 5.0 * hint_loss(sf["features"], tf["features"], regressor))
    student.load_state_dict(s0)  # the forward above moved the student's running statistics
    student.eval()
    teacher.train()
    loss = distill_step(student, teacher, regressor, opt, x, y, weights, 2.0)
    assert isinstance(loss, float) and loss == pytest.approx(expected.item(), rel=1e-6)
    assert not teacher.training and student.training
    torch.testing.assert_close(_state(teacher), t0, rtol=0, atol=0)  # weights and BatchNorm statistics
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not torch.equal(v, _state(student)[k]) for k, v in s0.items() if k.endswith("weight"))
    assert not torch.equal(_state(regressor)["proj.weight"], r0["proj.weight"])


def test_distill_step_refuses_what_it_cannot_do(digits):
    teacher, loader = _vit("tiny"), _small(digits, 64)
    with pytest.raises(ValueError, match="crd"):
        distill(_vit(), teacher, loader, losses={"ce": 1.0, "crd": 0.5}, epochs=1, step=distill_step, progress=False)
    with pytest.raises(ValueError, match="needs a teacher"):
        distill(_vit(), None, loader, losses={"ce": 1.0}, epochs=1, step=distill_step, progress=False)
    with pytest.raises(ValueError, match="penultimate"):
        distill(_vit(), teacher, loader, losses={"ce": 1.0, "hint": 1.0}, hint_layers=[("blocks.1", "blocks.2")],
                epochs=1, step=distill_step, progress=False)
    with pytest.raises(ValueError, match="step="):
        distill(_vit(), teacher, loader, losses={"ce": 1.0}, epochs=1, step="distill_step", progress=False)
    with pytest.raises(ValueError, match="infonce"):
        distill_step(_vit(), teacher, None, torch.optim.SGD(_vit().parameters(), lr=0.1), torch.zeros(2, 1, 8, 8),
                     torch.zeros(2, dtype=torch.long), {"ce": 1.0, "infonce": 1.0}, 2.0)


def test_a_step_that_never_runs_the_student_is_named(digits):
    def lazy(student, teacher, regressor, optimizer, x, y, weights, temperature):
        return 0.0

    with pytest.raises(ValueError, match="never ran the student"):
        distill(_vit(), _vit("tiny"), _small(digits, 64), losses={"ce": 1.0, "kd": 1.0}, epochs=1, step=lazy,
                progress=False)
