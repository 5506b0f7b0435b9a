"""The operator's weight file: named by flag or environment, and placed later ("Try again" loads it)."""

from __future__ import annotations

import os
import sys

import torch
from streamlit.testing.v1 import AppTest
from torchvision.models import resnet50

from fpn_core.weights import WEIGHTS_ENV
from tests.conftest import open_page
from ui import settings as S
from ui.cache import clear_model_caches, operator_backbone_file


def _banner(at: AppTest) -> str:
    """The weights notice: in full (a warning) or compact (an expander's label)."""
    return "\n".join([w.value for w in at.warning] + [e.label for e in at.expander])


def test_try_again_picks_up_a_newly_placed_weight_file(tmp_path, monkeypatch) -> None:
    at = open_page(size=96)
    assert not at.exception
    assert "random weights" in _banner(at)  # offline: the seeded random init, said plainly

    # The operator places a file and names it; the cached fallback must not hide it.
    torch.manual_seed(0)
    path = tmp_path / "resnet50-local.pth"
    torch.save(resnet50().state_dict(), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    at.run()
    assert "random weights" in _banner(at), "without Try again the cached backbone stays"
    try:
        at.button(key=S.KEY_RETRY).click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert "backbone has random weights" not in _banner(at)
        assert any("local file resnet50-local.pth" in c.value for c in at.caption), "the provenance names it"
    finally:  # leave the process-wide cache as the other tests expect it
        monkeypatch.delenv(WEIGHTS_ENV)
        clear_model_caches()


def test_the_weights_flag_reaches_the_engine_without_the_environment(tmp_path, monkeypatch) -> None:
    """``streamlit run dashboard.py -- --weights PATH``: the backbone loads PATH; FPN_WEIGHTS is never written."""
    torch.manual_seed(0)
    path = tmp_path / "resnet50-flag.pth"
    torch.save(resnet50().state_dict(), path)
    monkeypatch.setattr(sys, "argv", ["dashboard.py", "--weights", str(path)])
    clear_model_caches()  # the process-wide backbone was built without the flag
    try:
        at = open_page(size=96)
        assert not at.exception, [e.value for e in at.exception]
        assert any("local file resnet50-flag.pth" in c.value for c in at.caption), "the provenance names it"
        assert WEIGHTS_ENV not in os.environ
    finally:
        clear_model_caches()


def test_the_operators_environment_wins_over_the_flag(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["dashboard.py", "--weights", "/flag.pth"])
    assert operator_backbone_file() == "/flag.pth"
    monkeypatch.setenv(WEIGHTS_ENV, "/env.pth")
    assert operator_backbone_file() == "/env.pth"
    monkeypatch.setattr(sys, "argv", ["dashboard.py"])
    monkeypatch.delenv(WEIGHTS_ENV)
    assert operator_backbone_file() is None
