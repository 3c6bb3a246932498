"""Checkpoints: round trip, mismatches and unusable files retrain (saying why), output folders checked before
training, a failed save keeps the trained model, atomic writes, permissions, bad arguments."""

import os
import shutil
import stat

import pytest
import torch
from torch import nn

from course_utils import checkpoints
from course_utils import storage as course_io
from course_utils.checkpoints import CheckpointNotSavedWarning, load_checkpoint, save_checkpoint, train_or_load
from course_utils.storage import OutputPathError

HISTORY = {"test_acc": [0.5]}


def tiny_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class Trainer:
    """A ``train`` callable that counts its calls and changes the weights, like training would."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        with torch.no_grad():
            model[1].bias.fill_(float(self.calls))
        return {"test_acc": [float(self.calls)]}


def test_checkpoint_round_trip(tmp_path):
    m = tiny_model()
    path = save_checkpoint(tmp_path / "m.pt", m, {"a": 1}, HISTORY)
    m2 = tiny_model()
    assert load_checkpoint(path, m2, {"a": 1}) == HISTORY
    for p, q in zip(m.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_checkpoint_mismatch_and_corruption_retrain(tmp_path, capsys):
    train = Trainer()
    cfg = {"seed": 0, "epochs": 1}
    _, h = train_or_load("m", tiny_model, train, cfg, directory=tmp_path)
    assert train.calls == 1 and "No checkpoint" in capsys.readouterr().out
    _, h = train_or_load("m", tiny_model, train, cfg, directory=tmp_path)
    assert train.calls == 1 and h == {"test_acc": [1.0]}, "matching checkpoint was not reused"
    _, h = train_or_load("m", tiny_model, train, {"seed": 0, "epochs": 2}, directory=tmp_path)
    assert train.calls == 2 and "another configuration" in capsys.readouterr().out
    (tmp_path / "m.pt").write_bytes(b"not a checkpoint")
    _, h = train_or_load("m", tiny_model, train, {"seed": 0, "epochs": 2}, directory=tmp_path)
    assert train.calls == 3 and "corrupt" in capsys.readouterr().out


def test_checkpoint_of_another_architecture_is_not_loaded(tmp_path, capsys):
    save_checkpoint(tmp_path / "m.pt", nn.Linear(3, 3), {"k": 1}, HISTORY)
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    assert load_checkpoint(tmp_path / "m.pt", model, {"k": 1}) is None
    assert "does not fit" in capsys.readouterr().out
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters())), "a failed load changed the model"


GOOD_STATE = tiny_model().state_dict()
CANONICAL = checkpoints._canonical({"k": 1})


@pytest.mark.parametrize("payload, reason", [
    ([1, 2, 3], "it holds a list, not a dict"),
    ({"config": {"k": 1}, "state_dict": GOOD_STATE, "history": HISTORY}, "configuration is a dict, not JSON text"),
    ({"config": "{not json", "state_dict": GOOD_STATE, "history": HISTORY}, "configuration is not valid JSON"),
    ({"config": "[1]", "state_dict": GOOD_STATE, "history": HISTORY}, "configuration is not a JSON object"),
    ({"state_dict": GOOD_STATE, "history": HISTORY}, "configuration is a NoneType"),
    ({"config": CANONICAL, "state_dict": [1, 2], "history": HISTORY}, "weights are a list, not a state dict"),
    ({"config": CANONICAL, "history": HISTORY}, "weights are a NoneType"),
    ({"config": CANONICAL, "state_dict": GOOD_STATE}, "history is a NoneType, not a dict"),
    ({"config": CANONICAL, "state_dict": GOOD_STATE, "history": {}}, "it has no training history"),
    ({"config": CANONICAL, "state_dict": GOOD_STATE, "history": [0.5]}, "history is a list"),
    ({"config": CANONICAL, "state_dict": GOOD_STATE, "history": {"test_acc": "high"}}, "'test_acc' is not a list"),
])
def test_unusable_checkpoints_retrain_with_the_reason(tmp_path, capsys, payload, reason):
    torch.save(payload, tmp_path / "m.pt")
    assert load_checkpoint(tmp_path / "m.pt", tiny_model(), {"k": 1}) is None
    assert reason in capsys.readouterr().out
    train = Trainer()
    model, history = train_or_load("m", tiny_model, train, {"k": 1}, directory=tmp_path)
    assert train.calls == 1 and history == {"test_acc": [1.0]}
    assert load_checkpoint(tmp_path / "m.pt", tiny_model(), {"k": 1}) == history, "the retrained model was not saved"


def test_checkpoint_saved_without_history_is_retrained(tmp_path, capsys):
    save_checkpoint(tmp_path / "m.pt", tiny_model(), {"k": 1})  # allowed, but not enough to skip training
    assert load_checkpoint(tmp_path / "m.pt", tiny_model(), {"k": 1}) is None
    assert "no training history" in capsys.readouterr().out


def test_output_problems_are_raised_before_training(tmp_path):
    train = Trainer()
    (tmp_path / "m.pt").mkdir()  # the checkpoint path is a folder
    with pytest.raises(OutputPathError, match="checkpoint path .*m.pt is a folder"):
        train_or_load("m", tiny_model, train, {"k": 1}, directory=tmp_path)
    (tmp_path / "file").write_text("x")  # the checkpoint folder is a file
    with pytest.raises(OutputPathError, match="checkpoint folder .*file is a file, not a folder"):
        train_or_load("m", tiny_model, train, {"k": 1}, directory=tmp_path / "file")
    with pytest.raises(OutputPathError, match="checkpoint folder .*sub cannot be created: .*file is a file"):
        train_or_load("m", tiny_model, train, {"k": 1}, directory=tmp_path / "file" / "sub")
    assert train.calls == 0, "training started although the checkpoint could never be saved"


def test_unwritable_checkpoint_folder_is_raised_before_training(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(course_io.tempfile, "mkstemp", refuse)  # as on a read-only mount, even for root
    train = Trainer()
    with pytest.raises(OutputPathError, match="checkpoint folder .*ro is not writable \\(Permission denied\\)"):
        train_or_load("m", tiny_model, train, {"k": 1}, directory=tmp_path / "ro")
    assert train.calls == 0


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_checkpoint_folder_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            train_or_load("m", tiny_model, Trainer(), {"k": 1}, directory=ro)
    finally:
        ro.chmod(stat.S_IRWXU)


def test_matching_checkpoint_in_a_read_only_folder_still_loads(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "m.pt", tiny_model(), {"k": 1}, HISTORY)
    monkeypatch.setattr(checkpoints, "check_checkpoint_target", lambda p: pytest.fail("checked a folder to load"))
    assert train_or_load("m", tiny_model, Trainer(), {"k": 1}, directory=tmp_path)[1] == HISTORY


def test_failed_save_after_training_keeps_the_model(tmp_path):
    folder = tmp_path / "ckpt"

    def train_then_lose_the_folder(model):
        shutil.rmtree(folder)
        folder.write_text("someone replaced the folder with a file")
        with torch.no_grad():
            model[1].bias.fill_(7.0)
        return {"test_acc": [0.9]}

    with pytest.warns(CheckpointNotSavedWarning, match="could not save checkpoint .*ckpt/m.pt.*train it again"):
        model, history = train_or_load("m", tiny_model, train_then_lose_the_folder, {"k": 1}, directory=folder)
    assert history == {"test_acc": [0.9]} and torch.all(model[1].bias == 7.0), "the trained model was lost"


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
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(), {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def _train_or_load(**kw):
    args = dict(name="m", build=tiny_model, train=Trainer(), config={"k": 1}, directory=None)
    args.update(kw)
    return train_or_load(**args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name=""), "name=''"),
    (dict(name="a/b"), "name='a/b'"),
    (dict(name=".."), "name='..'"),
    (dict(name=3), "name=3"),
    (dict(build=None), "build and train must be callables"),
    (dict(train="fit"), "build and train must be callables"),
    (dict(config=[("k", 1)]), "config must be a dict"),
    (dict(config={1: "a"}), "config must be a dict with str keys"),
    (dict(config={"seed": "zero"}), "config\\['seed'\\]='zero'"),
    (dict(directory=5), "directory=5"),
    (dict(force="yes"), "force='yes'"),
    (dict(verbose=None), "verbose=None"),
    (dict(build=lambda: "not a model"), "model must be a torch.nn.Module"),
    (dict(train=lambda m: None), "train\\(model\\) must return the training history"),
])
def test_train_or_load_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _train_or_load(**{"directory": tmp_path, **kwargs})


@pytest.mark.parametrize("call, match", [
    (lambda p: save_checkpoint(p, "model", {}), "model must be a torch.nn.Module"),
    (lambda p: save_checkpoint(p, tiny_model(), "cfg"), "config must be a dict"),
    (lambda p: save_checkpoint(p, tiny_model(), {}, [0.5]), "history must be a dict"),
    (lambda p: save_checkpoint("", tiny_model(), {}), "path=''"),
    (lambda p: load_checkpoint(None, tiny_model(), {}), "path=None"),
    (lambda p: load_checkpoint(p, tiny_model(), None), "config must be a dict"),
])
def test_save_and_load_reject_bad_arguments(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "m.pt")


def test_saving_onto_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "m.pt").mkdir()
    with pytest.raises(OutputPathError, match="m.pt: it is a folder"):
        save_checkpoint(tmp_path / "m.pt", tiny_model(), {}, HISTORY)
