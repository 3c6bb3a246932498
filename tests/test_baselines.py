import pytest

from course_utils.baselines import baseline_config, checkpoint_name, get_baseline


def test_baseline_is_trained_once_then_loaded(capsys):
    m1, h1 = get_baseline("vit", "dyt", "digits", smoke=True, size="nano", progress=False)
    out = capsys.readouterr().out
    assert "No checkpoint" in out and "Saved checkpoint" in out
    m2, h2 = get_baseline("vit", "dyt", "digits", smoke=True, size="nano", progress=False)
    assert "Loaded checkpoint" in capsys.readouterr().out
    assert h1 == h2 and len(h1["test_acc"]) == 1
    for (n, p), (_, q) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert (p == q).all(), n


def test_config_names_mode_and_seed():
    cfg = baseline_config("cnn", "batchnorm", "mnist_5k", smoke=False, seed=3)
    assert cfg["epochs"] > 1 and checkpoint_name(cfg) == "cnn-small-batchnorm-mnist_5k-full-s3"
    assert baseline_config("cnn", smoke=True)["epochs"] == 1
    with pytest.raises(ValueError, match="model='mlp'"):
        baseline_config("mlp")
