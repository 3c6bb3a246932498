import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from course_utils.data import get_data
from course_utils.distillation import (
    ContrastMemory,
    CRDLoss,
    HintRegressor,
    distill,
    forward_with_features,
    hint_loss,
    info_nce_loss,
    kd_loss,
    kd_objective,
    kd_weights,
    nce_loss,
    teacher_outputs,
    with_indices,
)
from course_utils.metrics import compare_to_teacher, linear_cka
from course_utils.models import build_model
from course_utils.train import fit, seed_everything


def _vit(size="nano", norm="dyt"):
    return build_model("vit", norm, 10, (1, 8, 8), size)


@pytest.fixture(scope="module")
def digits():
    return get_data("digits", batch_size=64, seed=0)


# ------------------------------------------------------------------------------------------------ KD loss

def test_kd_loss_matches_hand_computed_value():
    # teacher probabilities (3/4, 1/4), student uniform: KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    s, t = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    expected_t1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kd_loss(s, t, temperature=1.0).item() == pytest.approx(expected_t1, rel=1e-5)
    # at T = 2 the teacher softens to (sqrt3, 1) / (sqrt3 + 1) and the KL is multiplied by T^2 = 4
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    kl_t2 = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    assert kd_loss(s, t, temperature=2.0).item() == pytest.approx(4 * kl_t2, rel=1e-5)


def test_kd_loss_is_batchmean_kl_times_t_squared_and_zero_for_equal_logits():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    for temp in (1.0, 2.0, 4.0, 8.0):
        p_t = F.softmax(t / temp, 1)
        kl = (p_t * (p_t.log() - F.log_softmax(s / temp, 1))).sum(1).mean()
        assert kd_loss(s, t, temp).item() == pytest.approx(kl.item() * temp ** 2, rel=1e-5)
    assert kd_loss(t, t, 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_t_squared_keeps_gradient_scale():
    # for large T, d KL / d s ~ (s - t) / (C T^2): the T^2 factor keeps the gradient of the soft loss O(1)
    torch.manual_seed(0)
    t = torch.randn(16, 10)
    s0 = torch.randn(16, 10)
    norms = {}
    for temp in (4.0, 8.0, 16.0):
        s = s0.clone().requires_grad_()
        kd_loss(s, t, temp).backward()
        norms[temp] = s.grad.norm().item()
    assert max(norms.values()) / min(norms.values()) < 1.3, norms
    raw = {}
    for temp in (4.0, 16.0):
        s = s0.clone().requires_grad_()
        (kd_loss(s, t, temp) / temp ** 2).backward()  # plain KL without the factor
        raw[temp] = s.grad.norm().item()
    assert raw[16.0] < raw[4.0] / 10  # without T^2 the gradient collapses like 1/T^2


def test_kd_objective_mixes_soft_and_hard():
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    soft, hard = kd_loss(s, t, 3.0), F.cross_entropy(s, y)
    assert kd_objective(s, t, y, 3.0, kd_weight=0.25).item() == pytest.approx((0.25 * soft + 0.75 * hard).item(), 1e-6)
    assert kd_objective(s, t, y, 3.0, kd_weight=0.0).item() == pytest.approx(hard.item(), 1e-6)
    assert kd_weights(0.9) == {"ce": pytest.approx(0.1), "kd": 0.9}


@pytest.mark.parametrize("temp", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(temp):
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), temp)


@pytest.mark.parametrize("kd_weight", [-0.1, 1.5, float("nan")])
def test_bad_kd_weight(kd_weight):
    with pytest.raises(ValueError, match="kd_weight"):
        kd_objective(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 4.0, kd_weight)
    with pytest.raises(ValueError, match="kd_weight"):
        kd_weights(kd_weight)


def test_mismatched_class_counts(digits):
    with pytest.raises(ValueError, match="classes"):
        kd_loss(torch.zeros(2, 10), torch.zeros(2, 5))
    teacher = build_model("vit", "dyt", 5, (1, 8, 8), "nano")
    with pytest.raises(ValueError, match="classes"):
        distill(_vit(), teacher, digits.train_loader, losses=kd_weights(0.5), epochs=1, progress=False)


def test_bad_loss_weights(digits):
    for losses, msg in (({"mse": 1.0}, "not valid"), ({"kd": -1.0}, "kd"), ({"ce": 0.0}, "zero")):
        with pytest.raises(ValueError, match=msg):
            distill(_vit(), _vit(), digits.train_loader, losses=losses, epochs=1, progress=False)
    with pytest.raises(ValueError, match="teacher"):
        distill(_vit(), None, digits.train_loader, losses={"kd": 1.0}, epochs=1, progress=False)


# ------------------------------------------------------------------------------------------------ features

def test_features_hook_equals_model_features():
    m = _vit("tiny").eval()
    x = torch.randn(4, 1, 8, 8)
    logits, feats = forward_with_features(m, x, ["features", "blocks.1"])
    assert torch.allclose(feats["features"], m.features(x))
    assert torch.allclose(logits, m(x))
    assert feats["blocks.1"].shape == (4, 17, 48)
    assert not m.head._forward_pre_hooks and not m.blocks[1]._forward_hooks  # hooks removed
    with pytest.raises(ValueError, match="blocks.9"):
        forward_with_features(m, x, ["blocks.9"])


def test_hint_loss_is_mse_of_regressed_feature():
    torch.manual_seed(0)
    reg = HintRegressor(4, 6)
    s, t = torch.randn(5, 4), torch.randn(5, 6)
    expected = ((reg.proj.weight @ s.t()).t() + reg.proj.bias - t).pow(2).mean()
    assert hint_loss(s, t, reg).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="does not match"):
        hint_loss(torch.randn(5, 4), torch.randn(5, 7), reg)


# ------------------------------------------------------------------------------------------------ CRD

def test_memory_bank_momentum_update_on_tiny_case():
    torch.manual_seed(0)
    mem = ContrastMemory(dim=2, n_data=4, negatives=2, temperature=0.5, momentum=0.5)
    mem.memory_student.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    mem.memory_teacher.copy_(mem.memory_student.flip(0))
    before_s, before_t = mem.memory_student.clone(), mem.memory_teacher.clone()
    es, et = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    idx = torch.tensor([0])
    contrast = torch.tensor([[0, 1, 3]])
    out_s, out_t = mem(es, et, idx, contrast)
    # scores: exp(<anchor, memory row> / T) / Z, Z = mean score * n_data fixed at the first call
    raw_s = torch.exp(before_t[[0, 1, 3]] @ es[0] / 0.5)
    raw_t = torch.exp(before_s[[0, 1, 3]] @ et[0] / 0.5)
    assert torch.allclose(out_s[0], raw_s / (raw_s.mean() * 4))
    assert torch.allclose(out_t[0], raw_t / (raw_t.mean() * 4))
    # row 0 moved halfway toward the new embedding, re-normalized; other rows unchanged
    exp_s = F.normalize(0.5 * before_s[0] + 0.5 * es[0], dim=0)
    exp_t = F.normalize(0.5 * before_t[0] + 0.5 * et[0], dim=0)
    assert torch.allclose(mem.memory_student[0], exp_s) and torch.allclose(mem.memory_teacher[0], exp_t)
    assert torch.allclose(mem.memory_student[1:], before_s[1:]) and torch.allclose(mem.memory_teacher[1:], before_t[1:])
    # Z stays fixed after the first call; eval mode does not update the bank
    z = mem.z_student.item()
    mem.eval()
    snapshot = mem.memory_student.clone()
    mem(es, et, idx, contrast)
    assert mem.z_student.item() == z and torch.equal(mem.memory_student, snapshot)
    with pytest.raises(ValueError, match="idx"):
        mem(es, et, torch.tensor([4]))


def test_nce_loss_on_tiny_case():
    scores = torch.tensor([[0.5, 0.1, 0.2]])
    n = 10
    noise = 2 / n
    expected = -(math.log(0.5 / (0.5 + noise)) + math.log(noise / (0.1 + noise)) + math.log(noise / (0.2 + noise)))
    assert nce_loss(scores, n).item() == pytest.approx(expected, rel=1e-5)
    # a higher positive score and lower negatives give a lower loss
    assert nce_loss(torch.tensor([[0.9, 0.01, 0.01]]), n) < nce_loss(scores, n)


def test_crd_loss_trains_embeddings_toward_alignment():
    torch.manual_seed(0)
    n = 32
    ft = torch.randn(n, 6)
    fs = torch.randn(n, 4, requires_grad=True)
    crd = CRDLoss(4, 6, n_data=n, dim=8, negatives=16, temperature=0.1)
    opt = torch.optim.Adam([fs, *crd.parameters()], lr=0.05)
    losses = []
    for _ in range(60):
        idx = torch.randperm(n)[:16]
        loss = crd(fs[idx], ft[idx], idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert math.isfinite(losses[0]) and sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    es = crd.embed_student(fs).detach()
    et = crd.embed_teacher(ft).detach()
    sims = es @ et.t()
    assert (sims.argmax(1) == torch.arange(n)).float().mean() > 0.5  # positives found among the others


def test_info_nce_loss():
    torch.manual_seed(0)
    e = F.normalize(torch.randn(8, 16), dim=1)
    aligned = info_nce_loss(e, e, 0.1)
    shuffled = info_nce_loss(e, e[torch.randperm(8)], 0.1)
    assert aligned < shuffled
    logits = e @ e.t() / 0.1
    assert aligned.item() == pytest.approx(F.cross_entropy(logits, torch.arange(8)).item(), rel=1e-6)


# ------------------------------------------------------------------------------------------------ loop

def test_with_indices_and_teacher_cache(digits):
    loader = with_indices(digits.train_loader, seed=0)
    x, y, idx = next(iter(loader))
    ds = digits.train_loader.dataset
    assert torch.equal(x[0], ds[int(idx[0])][0]) and int(y[0]) == int(ds[int(idx[0])][1])
    teacher = _vit().eval()
    logits, feats = teacher_outputs(teacher, ds, ["features"], batch_size=100)
    assert logits.shape == (len(ds), 10) and feats["features"].shape == (len(ds), 32)
    with torch.no_grad():
        assert torch.allclose(logits[idx], teacher(x), atol=1e-5)


def test_scratch_loop_has_fit_schedule(digits):
    small = DataLoader(TensorDataset(*digits.train_loader.dataset[:256]), batch_size=64, shuffle=False)
    seed_everything(0)
    h = distill(_vit(), None, small, losses={"ce": 1.0}, epochs=3, lr=1e-3, progress=False)
    assert h["epoch"] == [1, 2, 3] and "test_acc" not in h
    assert h["train_loss"] == pytest.approx(h["loss_ce"])
    assert h["train_loss"][-1] < h["train_loss"][0]
    seed_everything(0)
    hf = fit(_vit(), small, None, epochs=3, lr=1e-3, progress=False)
    assert h["lr"] == pytest.approx(hf["lr"])


@pytest.fixture(scope="module")
def cnn_teacher(digits):
    seed_everything(0)
    teacher = build_model("cnn", "batchnorm", 10, (1, 8, 8), "tiny")
    fit(teacher, digits.train_loader, None, epochs=3, lr=3e-3, progress=False)
    return teacher.eval()


def test_distill_all_terms_and_cache_equivalence(digits):
    seed_everything(0)
    teacher = _vit("tiny").eval()
    losses = {"ce": 1.0, "kd": 0.5, "hint": 1.0, "crd": 0.2, "infonce": 0.2}
    hists = []
    for cache in (True, False):
        seed_everything(1)
        student = _vit()
        hists.append(distill(student, teacher, digits.train_loader, digits.test_loader, losses, epochs=2,
                             hint_layers=[("features", "features"), ("blocks.1", "blocks.2")], crd_negatives=64,
                             cache_teacher=cache, progress=False, seed=1))
    h = hists[0]
    for k in ("loss_ce", "loss_kd", "loss_hint", "loss_crd", "loss_infonce", "test_acc", "test_loss"):
        assert len(h[k]) == 2 and all(math.isfinite(v) for v in h[k]), k
    assert h["loss_hint"][-1] < h["loss_hint"][0]
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    for k in ("loss_ce", "loss_kd", "loss_hint", "loss_crd", "train_loss"):
        assert hists[0][k] == pytest.approx(hists[1][k], rel=1e-4), k


def test_frozen_batchnorm_teacher_stays_in_eval_mode(digits, cnn_teacher):
    stats = cnn_teacher.blocks[0].norm.running_mean.clone()
    cnn_teacher.train()  # the loop must switch it back to eval mode
    seed_everything(0)
    distill(build_model("cnn", "dyt", 10, (1, 8, 8), "tiny"), cnn_teacher, digits.train_loader,
            losses=kd_weights(0.5), epochs=1, cache_teacher=False, progress=False)
    assert not cnn_teacher.training
    assert torch.equal(cnn_teacher.blocks[0].norm.running_mean, stats)


def test_kd_student_agrees_with_teacher(digits, cnn_teacher):
    seed_everything(0)
    student = build_model("cnn", "dyt", 10, (1, 8, 8), "tiny")
    h = distill(student, cnn_teacher, digits.train_loader, digits.test_loader, kd_weights(0.9), epochs=3, lr=1e-2,
                progress=False, eval_every=3)
    assert h["test_epoch"] == [3]
    r = compare_to_teacher(student, cnn_teacher, digits.test_loader)
    assert r["accuracy"] == pytest.approx(h["test_acc"][-1])
    assert r["agreement"] > 0.85 and r["accuracy"] > 0.85 and r["logit_cosine"] > 0.8
    assert 0.5 < r["feature_cka"] <= 1 + 1e-9


def test_linear_cka_properties():
    torch.manual_seed(0)
    a = torch.randn(50, 5)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    assert linear_cka(a, a @ q * 3.0) == pytest.approx(1.0, abs=1e-6)  # invariant to rotation and scale
    assert linear_cka(a, torch.randn(50, 7)) < 0.5
    with pytest.raises(ValueError, match="same n"):
        linear_cka(a, torch.randn(40, 5))


def test_hint_regressor_on_block_tokens(digits):
    seed_everything(0)
    student, teacher = _vit(), _vit("tiny")
    with pytest.raises(ValueError, match="blocks.5"):
        distill(student, teacher, digits.train_loader, losses={"ce": 1.0, "hint": 1.0},
                hint_layers=[("blocks.5", "blocks.0")], epochs=1, progress=False)


def test_distill_trains_even_if_autograd_was_switched_off(digits):
    small = DataLoader(TensorDataset(*digits.train_loader.dataset[:128]), batch_size=64)
    torch.set_grad_enabled(False)  # what torch.utils.benchmark's setup string leaves behind
    try:
        h = distill(_vit(), None, small, losses={"ce": 1.0}, epochs=1, progress=False)
    finally:
        torch.set_grad_enabled(True)
    assert math.isfinite(h["train_loss"][0])


def test_augment_runs_teacher_live_and_grad_clip(digits):
    small = DataLoader(TensorDataset(*digits.train_loader.dataset[:128]), batch_size=64)
    teacher = _vit("tiny").eval()
    calls = []
    teacher.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    seed_everything(0)
    distill(_vit(), teacher, small, losses=kd_weights(0.5), epochs=2, progress=False)
    cached_calls = len(calls)  # one pass over the data for the cache plus the shape probe
    calls.clear()
    seen = []
    seed_everything(0)
    distill(_vit(), teacher, small, losses=kd_weights(0.5), epochs=2, progress=False, grad_clip=0.5,
            augment=lambda x: seen.append(1) or x.flip(-1))
    assert cached_calls == 2 and len(calls) == 1 + 2 * 2 and len(seen) == 4
    with pytest.raises(ValueError, match="grad_clip"):
        distill(_vit(), teacher, small, losses=kd_weights(0.5), epochs=1, progress=False, grad_clip=0.0)
