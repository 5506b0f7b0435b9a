"""AppTest checks of the Detection page, offline: no COCO weights, so the detectors run untrained.

``conftest.py`` turns downloads off and points ``TORCH_HOME`` at an empty folder, so both
detectors fall back to their seeded random init. The page must say so, still show the anchors
and the level rule, and draw boxes only behind the "noise" toggle. Apart from the first test,
which opens the page as a browser does (detector's own 800 px input), the detectors run at the
sidebar's 128 px to stay fast.
"""

from __future__ import annotations

import json
import re

from streamlit.testing.v1 import AppTest

from fpn_core.detection import DETECTORS
from fpn_core.levels import hex_color
from tests.conftest import HOME, open_page
from ui import detection_page
from ui import settings as S

PAGE = "pages/9_Detection.py"
TABLE_COLUMNS = ["class", "score", "size √(wh) px", "input size px", "level", "paper k", "rule agrees"]


def _small(detector: str = "faster-rcnn", *, noise: bool = False) -> AppTest:
    """A fresh session on the Detection page with the detector at the sidebar's 128 px."""
    at = open_page(HOME, size=128)
    at.session_state[S.KEY_DETECTION_SIZE] = detection_page.SIZE_SIDEBAR
    at.session_state[S.KEY_DETECTOR] = detector
    at.session_state[S.KEY_DETECTION_NOISE] = noise
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _table(at: AppTest, first_column: str):
    frames = [d.value for d in at.dataframe if list(d.value.columns)[:1] == [first_column]]
    assert frames, [list(d.value.columns) for d in at.dataframe]
    return frames[0]


def _detections_table(at: AppTest):
    return _table(at, "class")


def _boxes_image(at: AppTest):
    images = [img for img in at.image if any("detections with score ≥" in c for c in img.captions)]
    return images[0] if images else None


def _count(at: AppTest) -> int:
    captions = [c for img in at.image for c in img.captions if "detections with score ≥" in c]
    assert captions, "the boxes image is missing"
    return int(re.match(r"(\d+) detections", captions[0]).group(1))  # type: ignore[union-attr]


def test_offline_page_says_untrained_shows_anchors_and_hides_boxes() -> None:
    at = open_page(PAGE, size=128)
    assert not at.exception, [e.value for e in at.exception]
    notice = "\n".join(w.value for w in at.warning)
    for spec in DETECTORS.values():  # which files, how big, where
        assert spec.weights.filename in notice and f"about {spec.file_mb} MB" in notice
    assert "untrained" in notice and "hub" in notice
    # The detector's own input size by default: torchvision's 800 px short side.
    assert any("network input 800 × 800 px" in c.value for c in at.caption)
    anchors = _table(at, "level")
    assert list(anchors["level"]) == ["p2", "p3", "p4", "p5", "p6"]
    assert list(anchors["anchor sizes (px)"]) == ["32", "64", "128", "256", "512"]
    assert any("box size √(wh) in input px" in d.value.columns for d in at.dataframe)  # the level rule
    assert _boxes_image(at) is None and not any(list(d.value.columns)[:1] == ["class"] for d in at.dataframe)
    assert any("Boxes hidden" in i.value for i in at.info)
    assert at.toggle(key=S.KEY_DETECTION_NOISE).label == "Draw untrained boxes (noise)"


def test_untrained_boxes_behind_the_noise_toggle() -> None:
    at = _small()
    assert _boxes_image(at) is None
    at.toggle(key=S.KEY_DETECTION_NOISE).set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    table = _detections_table(at)
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == _count(at) > 0
    assert set(table["level"]) <= {"p2", "p3", "p4", "p5"}  # RoIAlign pools from p2..p5 only
    assert table["score"].min() >= 0.5
    assert _boxes_image(at) is not None
    assert "noise" in _boxes_image(at).captions[0]
    legend = "\n".join(m.value for m in at.markdown)
    for level in ("p2", "p3", "p4", "p5", "p6"):
        assert hex_color(level) in legend  # the legend's color squares are the app-wide level colors


def test_threshold_only_refilters() -> None:
    at = _small(noise=True)
    before = _count(at)
    at.slider(key=S.KEY_DETECTION_SCORE).set_value(0.8).run()
    assert not at.exception
    after = _count(at)
    assert 0 <= after < before
    if after:
        assert len(_detections_table(at)) == after
    else:
        assert any("lower the score threshold" in i.value for i in at.info)


def _scale_captions(at: AppTest) -> list[str]:
    """The objectness panels' color-scale texts (in the captions of the images that carry the strips)."""
    return [c.split(" · ")[0] for image in at.image for c in image.captions if "◀ objectness ▶" in c]


def test_objectness_scale_and_proposals_toggles() -> None:
    at = _small(noise=True)
    ranges = _scale_captions(at)
    assert len(ranges) == 5 and len(set(ranges)) > 1  # each level its own scale
    at.toggle(key=S.KEY_DETECTION_SHARED).set_value(True).run()
    ranges = _scale_captions(at)
    assert len(ranges) == 5 and len(set(ranges)) == 1  # one scale for all
    at.toggle(key=S.KEY_DETECTION_PROPOSALS).set_value(True).run()
    assert not at.exception
    assert any("proposals of each level" in c for img in at.image for c in img.captions)
    assert "proposals" in "\n".join(m.value for m in at.markdown)


def test_switch_to_retinanet() -> None:
    at = _small(noise=True)
    at.radio(key=S.KEY_DETECTOR).set_value("retinanet").run()
    assert not at.exception, [e.value for e in at.exception]
    notice = "\n".join(w.value for w in at.warning)
    assert "RetinaNet is untrained" in notice
    anchors = _table(at, "level")
    assert list(anchors["level"]) == ["p3", "p4", "p5", "p6", "p7"]
    assert set(anchors["anchors per position"]) == {9}
    assert at.toggle(key=S.KEY_DETECTION_PROPOSALS).disabled  # no RPN
    # An untrained RetinaNet scores about 0.01 (its prior): at threshold 0 every kept box shows.
    at.slider(key=S.KEY_DETECTION_SCORE).set_value(0.0).run()
    assert not at.exception
    table = _detections_table(at)
    assert len(table) == _count(at) > 0
    assert set(table["level"]) <= {"p3", "p4", "p5", "p6", "p7"}


def _export_metadata(at: AppTest) -> dict:
    at.switch_page("pages/8_Export.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return json.loads(at.json[0].value)


def test_export_adds_detections_only_once_boxes_were_drawn() -> None:
    at = _small()
    meta = _export_metadata(at)
    assert "detections" not in meta
    assert "detections.png" not in list(_table(at, "file")["file"])

    at = _small(noise=True)
    count = _count(at)
    meta = _export_metadata(at)
    assert meta["detections"]["detector"] == "faster-rcnn"
    assert len(meta["detections"]["detections"]) == count
    assert "detections.png" in list(_table(at, "file")["file"])


def test_screen_boxes_and_downloads_use_the_level_colors() -> None:
    """What the page draws with PIL, and the PNG figures its download buttons render when pressed."""
    import numpy as np

    from fpn_core.detection import build_detector, detect
    from fpn_core.detection.figure import detection_figure
    from fpn_core.levels import LEVEL_COLORS
    from ui.panels import Download, render_download_png

    det = build_detector("faster-rcnn", weights="random", allow_download=False)
    image = np.random.default_rng(0).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    before = image.copy()
    dets = detect(det, image, 0.5, size=128)
    assert len(dets) > 0
    drawn = detection_page.draw_detections(image, dets)
    assert drawn.shape == image.shape and np.array_equal(image, before)  # a copy: the cached image stays as it was
    colors = {tuple(int(c) for c in px) for px in drawn.reshape(-1, 3)}
    assert {LEVEL_COLORS[level] for level in dets.levels} <= colors
    rows = detection_page.detection_rows(dets)
    sizes = [float(r["input size px"]) for r in rows]
    levels = [str(r["level"]) for r in rows]
    for download in (
        Download(detection_figure, (image, dets)),
        Download(detection_page.level_counts_figure, (dets.count_per_level(),), {"title": "t", "ylabel": "n"}),
        Download(detection_page.size_level_figure, (sizes, levels, dets.level_names), {"title": "t"}),
    ):
        assert render_download_png(download, 1).startswith(b"\x89PNG")


def test_with_a_checkpoint_boxes_show_without_notice_or_toggle(tmp_path, monkeypatch) -> None:
    """With detector weights present (here: the operator's file), the page shows everything normally."""
    import torch

    from fpn_core.detection import build_detector
    from ui import cache

    donor = build_detector("faster-rcnn", weights="random", seed=3, optimize=False, allow_download=False)
    path = tmp_path / "frcnn-checkpoint.pth"
    torch.save(donor.model.state_dict(), path)
    monkeypatch.setenv(DETECTORS["faster-rcnn"].env, str(path))
    cache.get_detector.clear()  # the process-wide detector was built before the file existed
    try:
        at = _small()
        assert not any("No COCO detector weights" in w.value for w in at.warning)
        assert S.KEY_DETECTION_NOISE not in [t.key for t in at.toggle]  # no noise toggle for a trained detector
        table = _detections_table(at)
        assert len(table) == _count(at) > 0 and table["score"].min() >= 0.5
        assert "noise" not in _boxes_image(at).captions[0]
        assert any("frcnn-checkpoint.pth" in c.value and "COCO" not in c.value for c in at.caption)
    finally:
        cache.get_detector.clear()
