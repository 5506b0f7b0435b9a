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


def test_every_cache_built_on_a_model_is_cleared_by_try_again() -> None:
    """A cached function is either registered for *Try again* or one of the image caches (no model in them)."""
    from streamlit.runtime.caching.cache_utils import CachedFunc

    from ui import cache

    cached = {name for name, value in vars(cache).items() if isinstance(value, CachedFunc)}
    registered = {name for name in cached if getattr(cache, name) in cache.MODEL_CACHES}
    assert cached - registered == {"load_sample", "load_scales", "scales_boxes", "thumbnail", "sample_names"}
    assert {"get_backbone", "get_fpn", "get_detector", "get_erf", "get_export"} <= registered

    key = cache.ModelKey("random", "cpu")
    calls: list[int] = []

    @cache.model_cache(max_entries=1)
    def probe(key: cache.ModelKey) -> int:
        calls.append(1)
        return len(calls)

    try:
        assert probe(key) == probe(key) == 1  # cached
        clear_model_caches()
        assert probe(key) == 2  # recomputed: the registry reached it
    finally:
        cache.MODEL_CACHES.remove(probe)


def test_each_cache_takes_one_key() -> None:
    """Every cached function is keyed by exactly one argument; what it computes from is ``_``-prefixed."""
    import inspect

    from ui import cache

    for cached in cache.MODEL_CACHES:
        params = inspect.signature(cached).parameters
        keyed = [name for name in params if not name.startswith("_")]
        assert len(keyed) == 1, (cached, keyed)
