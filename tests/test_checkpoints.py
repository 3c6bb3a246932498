"""Checkpoints: round trip, mismatches and corruption retrain, atomic writes, permissions."""

import pytest
import torch
from torch import nn

from course_utils.checkpoints import load_checkpoint, save_checkpoint, train_or_load


def tiny_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


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
