"""AppTest checks of the dashboard: every page renders, the sidebar drives them, uploads are safe.

The model is built with its seeded random init (``conftest.py`` turns downloads off and points
``TORCH_HOME`` at an empty folder). Most checks run at input size 128 to stay fast.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.conftest import HOME, ROOT, open_page
from ui import frame
from ui import settings as S
from ui.cache import operator_weights_path

PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))


def _app(page: str = HOME) -> AppTest:
    """A fresh session on ``page`` at input size 128."""
    return open_page(page)


def _text(at: AppTest) -> str:
    """Every markdown, caption and title text on the page, joined."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    return "\n".join(parts)


def _png(width: int = 96, height: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _page_number(path: str) -> int:
    """``"pages/10_Receptive_fields.py"`` -> 10 (the navigation's order; a plain sort puts 10 before 1)."""
    return int(Path(path).name.split("_", 1)[0])


def test_page_list_is_complete() -> None:
    files = [spec.file for spec in frame.PAGES]
    assert sorted(files) == PAGES  # every page file is in the navigation, once
    assert files == sorted(files, key=_page_number)  # in the order of their numbers
    assert files == [
        "pages/0_Home.py",
        "pages/1_Stage_activations.py",
        "pages/2_FPN_outputs.py",
        "pages/3_Overlays.py",
        "pages/4_Timing.py",
        "pages/5_Step_by_step.py",
        "pages/6_AB_comparison.py",
        "pages/7_Scale_probe.py",
        "pages/8_Export.py",
        "pages/9_Detection.py",
        "pages/10_Receptive_fields.py",
        "pages/11_Live.py",
    ]


def test_every_url_path_differs_from_streamlits_name_for_the_file() -> None:
    """Where they were equal, a fresh server opening that URL ran the page file without the frame."""
    for spec in frame.PAGES:
        assert spec.url_path != frame.legacy_url_path(spec), spec
    assert len({spec.url_path for spec in frame.PAGES}) == len(frame.PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(page: str) -> None:
    at = _app(page)
    assert not at.exception, [e.value for e in at.exception]
    spec = next(s for s in frame.PAGES if s.file == page)
    assert [t.value for t in at.title] == [spec.title if page != HOME else "FPN Explorer"]
    # The sidebar is the frame's, with every widget found by its key.
    assert at.slider(key=S.KEY_OUT_CHANNELS).value == 256
    assert at.multiselect(key=S.KEY_STAGES).value == ["c3", "c4", "c5"]
    # Tests run without weight files: the notice says so (in full on the first page), with Try again.
    assert any("random weights" in w.value for w in at.warning) or any(
        "backbone has random weights" in e.label for e in at.expander
    )
    assert at.button(key=S.KEY_RETRY)


def test_width_slider_changes_the_shapes_shown() -> None:
    at = _app("pages/2_FPN_outputs.py")
    assert "**p3** · shape 256 × 16 × 16" in _text(at)
    at.slider(key=S.KEY_OUT_CHANNELS).set_value(64).run()
    assert not at.exception
    text = _text(at)
    assert "**p3** · shape 64 × 16 × 16" in text
    assert "256 × 16 × 16" not in text


def test_width_persists_across_pages() -> None:
    at = _app(HOME)
    at.slider(key=S.KEY_OUT_CHANNELS).set_value(96).run()
    assert "d = 96" in _text(at)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
        assert at.slider(key=S.KEY_OUT_CHANNELS).value == 96, page
    at.switch_page("pages/2_FPN_outputs.py").run()
    assert "**p4** · shape 96 × 8 × 8" in _text(at)


def test_weights_notice_is_shown_in_full_once_then_compact() -> None:
    at = _app(HOME)
    assert any("backbone has random weights" in w.value for w in at.warning)
    at.switch_page("pages/3_Overlays.py").run()
    assert not any("backbone has random weights" in w.value for w in at.warning)
    compact = [e for e in at.expander if "backbone has random weights" in e.label]
    assert len(compact) == 1, [e.label for e in at.expander]
    assert at.button(key=S.KEY_RETRY), "Try again stays reachable in the compact notice"


def test_invalid_stage_choice_shows_error_and_keeps_last_valid() -> None:
    at = _app("pages/2_FPN_outputs.py")
    at.multiselect(key=S.KEY_STAGES).set_value(["c2", "c4"]).run()
    assert not at.exception
    assert any("contiguous" in e.value for e in at.error)
    text = _text(at)
    assert "**p3** · shape" in text and "**p2** · shape" not in text


def test_good_upload_is_analysed() -> None:
    at = _app(HOME)
    at.radio(key=S.KEY_SOURCE).set_value(S.SOURCE_UPLOAD).run()
    assert any("Choose an image" in i.value for i in at.info)
    at.file_uploader(key=S.KEY_UPLOAD).set_value(("grid.png", _png(96, 64), "image/png")).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    # 96 x 64 resized to the long side 128 -> 128 x 85.
    assert "**grid.png** resized to **128 × 85 px**" in _text(at)


def test_broken_upload_shows_one_error_and_the_page_keeps_working() -> None:
    at = _app("pages/3_Overlays.py")
    at.radio(key=S.KEY_SOURCE).set_value(S.SOURCE_UPLOAD).run()
    at.file_uploader(key=S.KEY_UPLOAD).set_value(("good.png", _png(), "image/png")).run()
    good_images = len(at.get("image"))  # streamlit 1.67's AppTest calls image elements "image"
    assert good_images > 0
    at.file_uploader(key=S.KEY_UPLOAD).set_value(("broken.jpg", b"\xff\xd8\xff garbage", "image/jpeg")).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "broken.jpg could not be used" in at.error[0].value
    # The previous good image is still analysed next to the message.
    assert len(at.get("image")) == good_images
    # And the page still reacts to the sidebar.
    at.slider(key=S.KEY_ALPHA).set_value(0.8).run()
    assert not at.exception


def test_operator_weights_flag_is_parsed() -> None:
    assert operator_weights_path(["--weights", "/models/r50.pth"]) == "/models/r50.pth"
    assert operator_weights_path(["--other", "x"]) is None


def test_timing_page_shows_shares_throughput_and_the_optimized_speedup() -> None:
    at = _app("pages/4_Timing.py")
    labels = [m.label for m in at.metric]
    assert {"Backbone", "FPN", "FPN share of total", "GFLOP/s achieved"} <= set(labels)
    at.toggle(key=S.KEY_COMPARE_PLAIN).set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    speedup = next(m for m in at.metric if m.label == "Optimized backbone speedup")
    assert speedup.value.endswith("×") and float(speedup.value[:-1]) > 0


def test_timing_table_lists_every_step_in_the_order_it_ran() -> None:
    at = _app("pages/4_Timing.py")
    table = at.dataframe[0].value
    steps = list(table["step"])
    assert steps[:5] == ["c1", "c2", "c3", "c4", "c5"] and steps[-1] == "p6.pool"
    assert steps[5] == "p5.lateral" and {"p4.top_down", "p3.output"} <= set(steps)
    assert list(table["part"]) == ["backbone"] * 5 + ["fpn"] * (len(steps) - 5)
    assert (table["output MB"] > 0).all()


def test_home_parameters_are_the_named_totals() -> None:
    at = _app(HOME)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    rows = {r["part"]: r["parameters"] for r in at.dataframe[0].value.to_dict("records")}
    backbone = sum(n for part, n in rows.items() if part.startswith("backbone c"))
    assert metrics["Backbone (ResNet-50 stages)"] == f"{backbone:,}" == f"{rows['backbone total']:,}"
    fpn = rows["FPN lateral 1×1 convs"] + rows["FPN output 3×3 convs"]
    assert [v for k, v in metrics.items() if k.startswith("FPN at d")] == [f"{fpn:,}"] == [f"{rows['FPN total']:,}"]
    assert metrics["FPN share"] == f"{fpn / (fpn + backbone):.1%}"


def _jpeg(width: int = 80, height: int = 60) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_camera_photo_takes_the_upload_path() -> None:
    at = _app(HOME)
    at.radio(key=S.KEY_SOURCE).set_value(S.SOURCE_CAMERA).run()
    assert not at.exception
    assert any("Take a photo" in i.value for i in at.info)
    at.camera_input(key=S.KEY_CAMERA).set_value(("photo.jpg", _jpeg(80, 60), "image/jpeg")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "**photo.jpg** resized to **128 × 96 px**" in _text(at)
    # A photo that is not an image gets the upload's message, and the last good photo stays.
    at.camera_input(key=S.KEY_CAMERA).set_value(("photo.jpg", b"\xff\xd8\xff not a jpeg", "image/jpeg")).run()
    assert not at.exception
    assert len(at.error) == 1 and "photo.jpg could not be used" in at.error[0].value
    assert "**photo.jpg** resized to **128 × 96 px**" in _text(at)


def test_timing_measures_once_and_again_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sidebar control the Timing page does not use reruns no measurement; Measure again does."""
    from ui import cache

    calls = []
    real = cache.time_pyramid

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "time_pyramid", counted)
    cache.timing_report.clear()
    at = _app("pages/4_Timing.py")
    assert not at.exception and len(calls) == 1
    at.slider(key=S.KEY_ALPHA).set_value(0.7).run()
    at.selectbox(key=S.KEY_COLORMAP).set_value("magma").run()
    assert not at.exception and len(calls) == 1
    at.button(key=S.KEY_MEASURE).click().run()
    assert not at.exception and len(calls) == 2


def _main_area(at: AppTest) -> list[tuple[str, bytes]]:
    """Every element of the page's main area (what the browser would redraw), as its protobuf."""
    out: list[tuple[str, bytes]] = []

    def walk(node: object) -> None:
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)
            return
        proto = getattr(node, "proto", None)
        if proto is not None:
            if proto.DESCRIPTOR.name == "DownloadButton":  # a drawn-on-demand file gets a new id each run
                proto = type(proto).FromString(proto.SerializeToString())
                proto.ClearField("deferred_file_id")
            out.append((type(node).__name__, proto.SerializeToString(deterministic=True)))

    walk(at.main)
    return out


def _other_value(control: S.Control, current: object) -> object:
    """A valid value of ``control`` other than ``current``."""
    if control.widget == "slider":
        lo, hi, _ = control.bounds  # type: ignore[misc]
        value = hi if current != hi else lo
        return int(value) if isinstance(control.default, int) else value
    if control.widget == "toggle":
        return not current
    return next(o for o in control.options if o != current)


def _set(at: AppTest, control: S.Control, value: object) -> None:
    kind = {"slider": "slider", "toggle": "toggle", "radio": "radio", "select": "selectbox"}[control.widget]
    getattr(at, kind)(key=control.key).set_value(value).run()


@pytest.mark.parametrize("spec", [s for s in frame.PAGES if s.ignores], ids=lambda s: s.url_path)
def test_controls_a_page_ignores_leave_its_elements_unchanged(spec: frame.PageSpec) -> None:
    """A control in ``ignores`` reruns only its fragment in the browser, so the page must truly not
    read it: its main area stays element for element the same; a control it reads does change it."""
    from ui.sidebar import table

    at = _app(spec.file)
    at.run()  # the weights notice is compact from the second run on
    before = _main_area(at)
    controls = table()
    for key in sorted(spec.ignores):
        control = controls[key]
        _set(at, control, _other_value(control, at.session_state[key]))
        assert not at.exception, key
        assert _main_area(at) == before, f"{spec.title} reads {key}, which it declares ignored"
    read = next(k for k in (S.KEY_OUT_CHANNELS, S.KEY_AGGREGATION) if k not in spec.ignores)
    _set(at, controls[read], _other_value(controls[read], at.session_state[read]))
    assert _main_area(at) != before, f"changing {read} must change {spec.title}"


def test_backbone_pages_weights_notice_leaves_the_fpn_out() -> None:
    """Stage activations shows no pyramid: its notice speaks of the backbone only, and a notice
    already told in full on a pyramid page stays compact there."""
    at = _app("pages/1_Stage_activations.py")
    at.session_state[frame.NOTICES_SEEN] = set()  # as if this page were the session's first
    at.run()
    told = "\n".join(w.value for w in at.warning)
    assert "backbone has random weights" in told and "FPN is untrained" not in told
    at.switch_page("pages/2_FPN_outputs.py").run()
    assert any("FPN is untrained" in w.value for w in at.warning), "the FPN's problem is new here: in full"
    at.switch_page("pages/1_Stage_activations.py").run()
    assert not at.warning and any("backbone has random weights" in e.label for e in at.expander)
