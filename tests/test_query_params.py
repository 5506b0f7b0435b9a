"""Shareable state: the sidebar lives in the URL's query parameters, and bad links are safe."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import HOME, open_page
from ui import settings as S

PAGE = "pages/2_FPN_outputs.py"
TABLE = S.controls(("a.jpg",), ("cpu",))


def _app(params: dict[str, str], page: str = PAGE) -> AppTest:
    return open_page(page, **params)


def _link_warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if "in the link is not valid" in w.value]


def test_url_values_set_the_widgets() -> None:
    at = _app(
        {
            S.KEY_SOURCE: "scales",
            S.KEY_OUT_CHANNELS: "64",
            S.KEY_STAGES: "c2,c3,c4",
            S.KEY_UPSAMPLE: "bilinear",
            S.KEY_MERGE: "mean",
            S.KEY_P6: "false",
            S.KEY_COLORMAP: "magma",
            S.KEY_ALPHA: "0.7",
            S.KEY_SCOPE: "shared",
            S.KEY_AGGREGATION: "max",
            S.KEY_EXPORT_SCALE: "2",
        }
    )
    assert not at.exception, [e.value for e in at.exception]
    assert not _link_warnings(at)
    assert at.radio(key=S.KEY_SOURCE).value == S.SOURCE_SCALES
    assert at.slider(key=S.KEY_OUT_CHANNELS).value == 64
    assert at.multiselect(key=S.KEY_STAGES).value == ["c2", "c3", "c4"]
    assert at.selectbox(key=S.KEY_UPSAMPLE).value == "bilinear"
    assert at.selectbox(key=S.KEY_MERGE).value == "mean"
    assert at.toggle(key=S.KEY_P6).value is False
    assert at.selectbox(key=S.KEY_COLORMAP).value == "magma"
    assert at.slider(key=S.KEY_ALPHA).value == 0.7
    assert at.radio(key=S.KEY_SCOPE).value == "shared"
    assert at.selectbox(key=S.KEY_AGGREGATION).value == "max"
    assert at.radio(key=S.KEY_EXPORT_SCALE).value == 2
    assert at.slider(key=S.KEY_SIZE).value == 128
    text = "\n".join(m.value for m in at.markdown)
    # The page really ran with them: width 64 on c2..c4, no p5/p6.
    assert "**p2** · shape 64 × " in text and "**p5**" not in text
    # Downloads follow the export scale.
    assert all("(2×)" in b.label for b in at.get("download_button"))


def test_changing_a_widget_updates_the_url_and_the_link_round_trips() -> None:
    at = _app({})
    assert at.query_params[S.KEY_OUT_CHANNELS] == "256"
    assert set(TABLE) - {S.KEY_SAMPLE} <= set(at.query_params)
    at.slider(key=S.KEY_OUT_CHANNELS).set_value(96).run()
    at.selectbox(key=S.KEY_COLORMAP).set_value("turbo").run()
    at.toggle(key=S.KEY_P6).set_value(False).run()
    assert not at.exception
    assert at.query_params[S.KEY_OUT_CHANNELS] == "96"
    assert at.query_params[S.KEY_COLORMAP] == "turbo"
    assert at.query_params[S.KEY_P6] == "false"
    # A teacher sends this URL: a fresh session opens with the same view.
    shared = {k: v for k, v in at.query_params.items() if isinstance(v, str)}
    again = _app(shared, page=HOME)
    assert not again.exception
    assert again.slider(key=S.KEY_OUT_CHANNELS).value == 96
    assert again.selectbox(key=S.KEY_COLORMAP).value == "turbo"
    assert again.toggle(key=S.KEY_P6).value is False
    assert "d = 96" in "\n".join(m.value for m in again.markdown)
    link = "\n".join(c.value for c in again.code)
    assert "fpn_width=96" in link and "map_colormap=turbo" in link


def test_invalid_url_values_fall_back_to_defaults_with_a_warning() -> None:
    # The warnings come with the first page a link opens (here the home page; any page shows them).
    at = _app({S.KEY_OUT_CHANNELS: "999", S.KEY_STAGES: "c2,c5", S.KEY_COLORMAP: "nope", S.KEY_ALPHA: "abc"}, page=HOME)
    assert not at.exception, [e.value for e in at.exception]
    warnings = _link_warnings(at)
    assert len(warnings) == 4, warnings
    for key in (S.KEY_OUT_CHANNELS, S.KEY_STAGES, S.KEY_COLORMAP, S.KEY_ALPHA):
        assert any(f"`{key}=" in w for w in warnings), key
    assert at.slider(key=S.KEY_OUT_CHANNELS).value == TABLE[S.KEY_OUT_CHANNELS].default == 256
    assert at.multiselect(key=S.KEY_STAGES).value == TABLE[S.KEY_STAGES].default == ["c3", "c4", "c5"]
    assert at.selectbox(key=S.KEY_COLORMAP).value == TABLE[S.KEY_COLORMAP].default == "viridis"
    assert at.slider(key=S.KEY_ALPHA).value == TABLE[S.KEY_ALPHA].default == 0.5
    # The URL is corrected to what is shown, and the warning is not repeated on the next run.
    assert at.query_params[S.KEY_OUT_CHANNELS] == "256"
    at.slider(key=S.KEY_ALPHA).set_value(0.6).run()
    assert not at.exception and not _link_warnings(at)


def test_parse_params_refuses_every_kind_of_bad_value() -> None:
    bad = {
        S.KEY_SOURCE: "ftp",
        S.KEY_SAMPLE: "nothere.jpg",
        S.KEY_OUT_CHANNELS: "100",  # not a multiple of 16
        S.KEY_STAGES: "c1,c2",
        S.KEY_P6: "maybe",
        S.KEY_SIZE: "4096",
        S.KEY_DEVICE: "tpu",
        S.KEY_WEIGHTS: "yolo",
        S.KEY_ALPHA: "0.33",
        S.KEY_SCOPE: "global",
        S.KEY_EXPORT_SCALE: "5x",
        "unrelated": "kept out",
    }
    accepted, notices = S.parse_params(bad, TABLE)
    assert accepted == {}
    assert len(notices) == len(bad) - 1
    good, notices = S.parse_params(
        {S.KEY_STAGES: ["c5,c4", "c4,c3"], S.KEY_EXPORT_SCALE: "3x", S.KEY_P6: "0", S.KEY_ALPHA: "1"}, TABLE
    )
    assert not notices
    assert good == {S.KEY_STAGES: ["c3", "c4"], S.KEY_EXPORT_SCALE: 3, S.KEY_P6: False, S.KEY_ALPHA: 1.0}


def test_the_control_table_takes_its_ranges_from_the_engine() -> None:
    from fpn_core.export import EXPORT_SCALES
    from fpn_core.fpn import MAX_OUT_CHANNELS, MIN_OUT_CHANNELS
    from fpn_core.maps import CHANNEL_AGGREGATIONS, COLORMAPS
    from fpn_core.pyramid import MAX_SIZE, MIN_SIZE

    assert TABLE[S.KEY_OUT_CHANNELS].bounds[:2] == (MIN_OUT_CHANNELS, MAX_OUT_CHANNELS)
    assert TABLE[S.KEY_SIZE].bounds[:2] == (MIN_SIZE, MAX_SIZE)
    assert TABLE[S.KEY_AGGREGATION].options == CHANNEL_AGGREGATIONS
    assert TABLE[S.KEY_COLORMAP].options == COLORMAPS
    assert TABLE[S.KEY_EXPORT_SCALE].options == EXPORT_SCALES
    # Every control's default parses back from its own URL text (the writer and reader agree).
    for control in TABLE.values():
        assert control.parse(control.to_url(control.default)) == control.default, control.key
