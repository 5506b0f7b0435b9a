"""AppTest and engine checks of the teaching pages: step by step, A/B, scale probe, export.

Random weights (``conftest.py`` turns downloads off), input size 128 (given as a URL query
parameter, the way a shared link would), so every page runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile

import pandas as pd
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from fpn_core import ABLATIONS, PyramidConfig
from fpn_core.compare import PRESETS
from fpn_core.lesson import panel_text, shape_line
from fpn_core.maps import MapStyle
from fpn_core.paper import TABLE1
from fpn_core.scales import make_scales_image
from fpn_core.weights import COCO
from tests.conftest import SMALL, open_page
from ui import ab_page, cache, export_page, probe_page
from ui import settings as S

STEP_PAGE = "pages/5_Step_by_step.py"
AB_PAGE = "pages/6_AB_comparison.py"
PROBE_PAGE = "pages/7_Scale_probe.py"
EXPORT_PAGE = "pages/8_Export.py"


def _app(page: str, **params: str) -> AppTest:
    """A fresh session on ``page`` at input size 128, with extra query parameters."""
    return open_page(page, **params)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _captions(at: AppTest) -> str:
    return "\n".join([c.value for c in at.caption] + [m.value for m in at.markdown])


def _settings(digest: str = "", size: int = SMALL, **config: object) -> S.Settings:
    image = make_scales_image().image
    fields: dict[str, object] = {"weights": "random", "stages": ("c2", "c3", "c4", "c5"), **config}
    return S.Settings(
        image=S.ImageChoice("scales", digest or "scales-test-" + cache.digest_of(image), image),
        config=PyramidConfig(**fields),  # type: ignore[arg-type]
        style=MapStyle(),
        size=size,
    )


def _analyse(settings: S.Settings, **changes: object) -> cache.Analysis:
    """The analysis through the dashboard's cache path (outside a streamlit run)."""
    image = settings.image
    assert image is not None
    return cache.get_analysis(settings.with_config(**changes).config, image.array, image.digest, settings.size)


# ------------------------------------------------------------------------- step by step


def test_step_page_renders_every_ablation_and_explains_missing_steps() -> None:
    """Each ablation's missing step shows its reason from the lesson table, and its paper number."""
    at = _app(STEP_PAGE, fpn_stages="c2,c3,c4,c5")
    _ok(at)
    text = _captions(at)
    assert shape_line("c4", torch.empty(1, 1024, 8, 8), 16) in text, "the c_k panel carries its shape and stride"
    assert "p5[..., ::2, ::2]" in text, "p6 is checked against every second cell of p5"
    missing = {  # ablation -> the step it drops, and why
        "full": ("top_down", "top"),
        "no-top-down": ("top_down", "ablated"),
        "no-lateral": ("lateral", "ablated"),
        "finest-only": ("output", "ablated"),
    }
    for ablation in ABLATIONS:
        at.selectbox(key=S.KEY_STEPS_ABLATION).set_value(ablation).run()
        _ok(at)
        assert str(TABLE1[ablation].ar) in _captions(at), "each ablation shows the paper's number"
        infos = [i.value for i in at.info]
        assert panel_text(*missing[ablation]).missing in infos, (ablation, infos)
        # The top level never has a top-down input; no other ablation's reason shows.
        others = {panel_text(*case).missing for case in missing.values() if case[1] == "ablated"}
        assert not (others - {panel_text(*missing[ablation]).missing}) & set(infos), ablation
    at.toggle(key=S.KEY_STEPS_PER_PANEL).set_value(True).run()
    _ok(at)


def test_no_top_down_output_is_the_3x3_of_the_lateral_alone() -> None:
    settings = _settings()
    ablated = _analyse(settings, ablation="no-top-down")
    full = _analyse(settings)
    fpn = ablated.model.fpn
    changed = 0
    for idx, (level, step) in enumerate(ablated.output.steps.items()):
        assert step.top_down is None
        assert step.lateral is not None and step.output is not None
        with torch.inference_mode():
            expected = fpn.get_result_from_layer_blocks(step.lateral, idx)
        torch.testing.assert_close(step.output, expected)
        torch.testing.assert_close(ablated.output.levels[level], expected)
        if not torch.allclose(full.output.levels[level], ablated.output.levels[level]):
            changed += 1
    # The top level has nothing from above in either case; every other level must change.
    assert changed == len(ablated.output.steps) - 1
    # Same FPN weights (same seed and width): only the computation differs.
    assert full.output.backbone is ablated.output.backbone


# ---------------------------------------------------------------------------- A/B page


def test_ab_page_renders_every_preset_and_ablation() -> None:
    at = _app(AB_PAGE)
    _ok(at)
    assert len(at.get("download_button")) >= 3, "A row, B row and the difference, each with a download"
    for preset in PRESETS:
        at.selectbox(key=S.KEY_AB_PRESET).set_value(preset).run()
        _ok(at)
    at.selectbox(key=S.KEY_AB_PRESET).set_value("Width 256 vs 64").run()
    assert at.slider(key=ab_page.ab_key("a", "out_channels")).value == 256
    assert at.slider(key=ab_page.ab_key("b", "out_channels")).value == 64
    assert at.dataframe, "the statistics table is shown"
    at.selectbox(key=S.KEY_AB_PRESET).set_value("Nearest vs bilinear upsampling").run()
    _ok(at)
    assert at.selectbox(key=ab_page.ab_key("a", "upsample")).value == "nearest"
    assert at.selectbox(key=ab_page.ab_key("b", "upsample")).value == "bilinear"
    for ablation in ABLATIONS:
        at.selectbox(key=ab_page.ab_key("b", "ablation")).set_value(ablation).run()
        _ok(at)
        assert f"AR1k **{TABLE1[ablation].ar}**" in _captions(at)


def test_ab_coco_preset_explains_the_missing_file() -> None:
    at = _app(AB_PAGE)
    at.selectbox(key=S.KEY_AB_PRESET).set_value("COCO-trained vs random FPN").run()
    _ok(at)
    assert at.selectbox(key=ab_page.ab_key("a", "weights")).value == "coco-fpn"
    notes = [i.value for i in at.info]
    assert any("COCO-trained FPN" in n and COCO.filename in n for n in notes), notes


# -------------------------------------------------------------------------- scale probe


def test_probe_page_shows_rule_table_and_one_grid_per_level() -> None:
    at = _app(PROBE_PAGE, fpn_stages="c2,c3,c4,c5")
    _ok(at)
    table = at.dataframe[0].value
    assert list(table["box"]) == ["32 px", "64 px", "128 px", "256 px"]
    assert {"paper k", "paper level", "strongest level", "p2", "p6"} <= set(table.columns)
    # The scales image is 768 x 512, the network sees 128 x 85: 256 px -> 42.5 px -> k = 1 -> p2.
    assert list(table["paper level"]) == ["p2", "p2", "p2", "p2"]
    captions = "\n".join(c for image in at.get("image") for c in image.captions)
    grids = re.findall(r"(p\d) · stride (\d+) · grid (\d+) × (\d+) = (\d+) cells", captions)
    # One grid per level p2..p6, and the caption's cell count is the feature map's size
    # (128 x 85 input: p2 32 x 22, p3 16 x 11, p4 8 x 6, p5 4 x 3, p6 2 x 2).
    assert grids == [
        ("p2", "4", "32", "22", "704"),
        ("p3", "8", "16", "11", "176"),
        ("p4", "16", "8", "6", "48"),
        ("p5", "32", "4", "3", "12"),
        ("p6", "64", "2", "2", "4"),
    ]
    at.segmented_control(key=S.KEY_PROBE_SOURCE).set_value(probe_page.PROBE_OWN).run()
    _ok(at)
    assert at.data_editor, "boxes are entered in a data editor"


def test_typed_boxes_are_validated() -> None:
    table = pd.DataFrame(
        [
            {"label": "ok", "x0": 10, "y0": 10, "x1": 50, "y1": 40},
            {"label": "flipped", "x0": 50, "y0": 10, "x1": 10, "y1": 40},
            {"label": "outside", "x0": 0, "y0": 0, "x1": 500, "y1": 40},
            {"label": "ok", "x0": 0, "y0": 0, "x1": 20, "y1": 20},
            {"label": None, "x0": None, "y0": None, "x1": None, "y1": None},
        ]
    )
    boxes, problems = probe_page.parse_boxes(table, width=200, height=100)
    assert [b.label for b in boxes] == ["ok", "ok (row 4)"]
    assert len(problems) == 2 and problems[0].startswith("Row 2") and "200 × 100" in problems[1]


# ------------------------------------------------------------------------------ export


EXPECTED_FEATURES = ("c1", "c2", "c3", "c4", "c5", "p3", "p4", "p5", "p6")


def test_export_page_lists_the_zip_and_the_zip_is_complete() -> None:
    at = _app(EXPORT_PAGE)
    _ok(at)
    listed = set(at.dataframe[0].value["file"])
    expected = {"input.png", "slide.png", "metadata.json"}
    expected |= {f"{folder}/{name}.png" for folder in ("maps", "overlays") for name in EXPECTED_FEATURES}
    assert listed == expected
    assert at.get("download_button"), "the Export all button is shown"

    # The same bundle, built by the page's own function for the page's settings.
    settings = _settings("scales-export", stages=("c3", "c4", "c5"))
    analysis = _analyse(settings)
    bundle = export_page.export_bundle(settings, analysis)
    with zipfile.ZipFile(io.BytesIO(bundle.archive)) as zf:
        names = set(zf.namelist())
        assert names == expected
        for name in names:
            data = zf.read(name)
            if name.endswith(".png"):
                with Image.open(io.BytesIO(data)) as img:
                    img.verify()
        meta = json.loads(zf.read("metadata.json"))
    tensors = {**analysis.output.stages, **analysis.output.levels}
    assert meta["shapes"] == {name: list(t.shape) for name, t in tensors.items()}
    assert meta["config"]["out_channels"] == settings.config.out_channels
    assert meta["weights"]["pretrained"] is False


def test_export_page_builds_the_bundle_at_the_sidebars_resolution() -> None:
    """The sidebar's export scale reaches the bundle (that a scale grows the PNGs: tests/test_export.py)."""
    settings = _settings("scales-export-scale", stages=("c4", "c5"), p6=False)
    analysis = _analyse(settings)
    one = export_page.export_bundle(settings, analysis)
    two = export_page.export_bundle(dataclasses.replace(settings, export_scale=2), analysis)
    assert json.loads(one.files["metadata.json"])["export"]["scale"] == 1
    assert json.loads(two.files["metadata.json"])["export"]["scale"] == 2
    assert one.files["slide.png"] != two.files["slide.png"]
