"""The deprecation canary: deprecations fail the tests, and the course uses no deprecated quantization API."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

import course_utils.quantization as Q
from course_utils.models import build_model
from course_utils.notebook import CANARY_ALLOWED, deprecation_canary, install_deprecation_canary

ROOT = Path(__file__).resolve().parents[1]
#: The eager quantization API PyTorch deprecated (and the names it was imported by).
DEPRECATED = re.compile(r"torch\.ao\.quantization|torch\.quantization|torch\.ao\.nn\.quantized"
                        r"|torch\.backends\.quantized|torch\.q(u)?int8\b")


def test_a_deprecation_fails_a_test():
    with pytest.raises(DeprecationWarning):
        warnings.warn("this API goes away", DeprecationWarning, stacklevel=1)
    with pytest.raises(FutureWarning):
        warnings.warn("this default changes", FutureWarning, stacklevel=1)


def test_every_allowed_warning_says_why():
    assert [a for a, _, _ in deprecation_canary()][:3] == ["error"] * 3  # the errors first, the allow-list after
    for message, category, why in CANARY_ALLOWED:
        assert issubclass(category, Warning) and len(why) > 20 and ":" not in message


def test_the_installed_canary_turns_a_deprecation_into_an_error():
    with warnings.catch_warnings():
        warnings.resetwarnings()
        install_deprecation_canary()
        with pytest.raises(DeprecationWarning):
            warnings.warn("old", DeprecationWarning, stacklevel=1)


def test_no_deprecated_quantization_api_in_the_package_or_the_notebooks():
    files = [*(ROOT / "course_utils").rglob("*.py"), *(ROOT / "notebooks").glob("*.ipynb")]
    hits = [f"{f.relative_to(ROOT)}:{n}: {line.strip()[:80]}" for f in files
            for n, line in enumerate(f.read_text().splitlines(), 1) if DEPRECATED.search(line)]
    assert not hits, "deprecated torch.ao quantization API:\n" + "\n".join(hits)


def test_real_int8_paths_raise_no_deprecation():
    """On the torch.ao code every call warned 'torch.ao.quantization is deprecated' (silenced by quiet_torch_ao)."""
    torch.manual_seed(0)
    model = build_model("vit", "dyt", 10, (1, 8, 8), size="nano").eval()
    x = torch.randn(16, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        for q in (Q.dynamic_int8(model), Q.weight_only_int8(model), Q.static_int8(model, x),
                  Q.qat_int8_convert(Q.qat_int8_prepare(model)), Q.ptq_int8(model, 4)):
            with torch.no_grad():
                assert q(x).shape == (16, 10)
