import pytest
from torch import nn

from course_utils.data import get_data
from course_utils.train import (
    evaluate,
    fit,
    get_device,
    seed_everything,
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
