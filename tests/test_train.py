import pytest
import torch
from torch import nn

from course_utils.data import get_data
from course_utils.train import (
    evaluate,
    fit,
    get_device,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    train_or_load,
    warmup_cosine,
)


def tiny_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    return get_data("digits", batch_size=64, seed=0)


def test_fit_learns_and_records_history(digits):
    seed_everything(0)
    model = tiny_model()
    before = evaluate(model, digits.test_loader)["accuracy"]
    extra = []
    hist = fit(model, digits.train_loader, digits.test_loader, epochs=3, lr=1e-2, progress=False,
               after_epoch=lambda m, e, rec: rec.update(marker=e), after_step=lambda m, s: extra.append(s))
    assert hist["epoch"] == [1, 2, 3] and hist["marker"] == [1, 2, 3]
    assert hist["test_acc"][-1] > max(0.8, before + 0.3)
    assert extra[-1] == 3 * len(digits.train_loader)
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_same_seed_same_numbers(digits):
    def run():
        seed_everything(5)
        m = tiny_model()
        return fit(m, digits.train_loader, None, epochs=1, lr=1e-2, progress=False, seed=5)["train_loss"]
    assert run() == run()


def test_schedule_warms_up_then_decays_to_zero():
    f = warmup_cosine(100, 10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_device_choice():
    assert get_device("cpu").type == "cpu"
    assert get_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device='tpu'"):
        get_device("tpu")


def test_bad_training_arguments(digits):
    with pytest.raises(ValueError, match="epochs=0"):
        fit(tiny_model(), digits.train_loader, epochs=0)
    with pytest.raises(ValueError, match="seed=-1"):
        seed_everything(-1)


def test_checkpoint_round_trip(tmp_path):
    m = tiny_model()
    path = save_checkpoint(tmp_path / "m.pt", m, {"a": 1}, {"test_acc": [0.5]})
    m2 = tiny_model()
    assert load_checkpoint(path, m2, {"a": 1}) == {"test_acc": [0.5]}
    for p, q in zip(m.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_checkpoint_mismatch_and_corruption_retrain(tmp_path, capsys):
    calls = []

    def train(m):
        calls.append(1)
        return {"test_acc": [len(calls)]}

    cfg = {"seed": 0, "epochs": 1}
    _, h = train_or_load("m", tiny_model, train, cfg, directory=tmp_path)
    assert len(calls) == 1 and "No checkpoint" in capsys.readouterr().out
    _, h = train_or_load("m", tiny_model, train, cfg, directory=tmp_path)
    assert len(calls) == 1 and h == {"test_acc": [1]}, "matching checkpoint was not reused"
    _, h = train_or_load("m", tiny_model, train, {"seed": 0, "epochs": 2}, directory=tmp_path)
    assert len(calls) == 2 and "another configuration" in capsys.readouterr().out
    (tmp_path / "m.pt").write_bytes(b"not a checkpoint")
    _, h = train_or_load("m", tiny_model, train, {"seed": 0, "epochs": 2}, directory=tmp_path)
    assert len(calls) == 3 and "corrupt" in capsys.readouterr().out


def test_checkpoint_of_another_architecture_is_not_loaded(tmp_path, capsys):
    save_checkpoint(tmp_path / "m.pt", nn.Linear(3, 3), {"k": 1})
    assert load_checkpoint(tmp_path / "m.pt", tiny_model(), {"k": 1}) is None
    assert "does not fit" in capsys.readouterr().out


def test_failed_save_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(), {"v": 1})
    good = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, tiny_model(), {"v": 2})
    assert path.read_bytes() == good
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_has_ordinary_permissions(tmp_path):
    import os
    import stat
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(), {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
