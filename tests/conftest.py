"""Test isolation: every test writes figures, results and checkpoints into its own temporary folder."""

import pytest
import torch

from course_utils.notebook import deprecation_canary


def pytest_configure(config):
    """The deprecation canary (course_utils.notebook.CANARY): deprecations fail the test that triggers them."""
    for action, message, category in deprecation_canary():
        config.addinivalue_line("filterwarnings", f"{action}:{message}:{category.__name__}")


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("COURSE_RESULTS_PATH", str(tmp_path / "results.json"))
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    torch.manual_seed(0)
    yield
