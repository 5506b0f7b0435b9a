"""Real-browser check of the models folder: the sidebar lists its files, the Detection page draws a
Mask R-CNN's masks and a Keypoint R-CNN's skeletons, and a feature page shows an mmdetection file.

Its own streamlit server runs with ``FPN_MODELS_DIR`` naming a folder written here: random-weight
Mask R-CNN (3 classes; mask logits set to 2, so each mask fills its box) and Keypoint R-CNN (17 keypoints) state
dicts from torchvision's builders, and an mmdetection RetinaNet file (``tests/test_models_folder.py``).
The score threshold goes to 0 (torchvision's own 0.05 stays the floor) so that the random detectors'
boxes, masks and keypoints are drawn. Screenshots (1440 wide, tall)
go to ``artifacts/screenshots/``: ``models_sidebar.png``, ``models_detection_masks.png``,
``models_detection_keypoints.png``, ``models_fpn_outputs_mmdet.png``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torchvision.models import detection

from tests.browser import IDLE, PAGE_TIMEOUT_MS, no_exception, open_in_new_context, thumb
from tests.conftest import ROOT, running_server
from tests.test_models_folder import MMDET_FILE, _resnet_state, write_mmdet_file

SHOTS = ROOT / "artifacts" / "screenshots"
TALL = {"width": 1440, "height": 3200}
MASK_FILE, KEYPOINT_FILE = "maskrcnn_random.pth", "keypointrcnn_random.pth"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def models_server(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    mask = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    state = mask.state_dict()
    state["roi_heads.mask_predictor.mask_fcn_logits.weight"].zero_()  # every mask covers its box (logit 2):
    state["roi_heads.mask_predictor.mask_fcn_logits.bias"].fill_(2.0)  # random logits would tint scattered dots
    torch.save(state, folder / MASK_FILE)
    (folder / "maskrcnn_random.classes.txt").write_text("cat\nsofa\n", encoding="utf-8")
    keypoints = detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    torch.save(keypoints.state_dict(), folder / KEYPOINT_FILE)
    write_mmdet_file(folder, _resnet_state())
    env = {**test_env, "FPN_MODELS_DIR": str(folder)}
    with running_server(env, tmp_path_factory.mktemp("server") / "streamlit.log") as base:
        yield base


def _settle(page) -> None:
    page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
    no_exception(page)


def _detect_with(page, label: str, screenshot: str) -> str:
    """Choose a Detector by its label, drop the score threshold to 0, screenshot; returns the page text."""
    page.locator("[data-testid='stRadio']").filter(has_text="Detector").get_by_text(label).click()
    _settle(page)
    page.get_by_text("detections with score ≥").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    slider = thumb(page, "Score threshold", sidebar=False)
    slider.focus()
    if slider.input_value() != "0":
        for _ in range(60):  # 0.5 down to 0 in steps of 0.01 (the slider sends its value once it settles)
            page.keyboard.press("ArrowLeft")
    _settle(page)
    # The slider at 0 keeps all the heads kept: torchvision's own threshold (0.05) is the floor.
    caption = page.get_by_text("detections with score ≥ 0.05").first
    caption.wait_for(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    assert int(caption.inner_text().split()[0]) > 0, caption.inner_text()
    page.screenshot(path=str(SHOTS / screenshot), full_page=True)
    return page.inner_text("body")


def test_models_folder_in_the_browser(models_server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = open_in_new_context(browser, f"{models_server}/detection?input_size=320", "Detection")
    try:
        page.set_viewport_size(TALL)
        no_exception(page)
        # The sidebar's Weights choice lists the folder, each file with its kind and classes.
        page.locator("[data-testid='stSelectbox']").filter(has_text="Weights").click()
        options = page.locator("[role='option']")
        options.first.wait_for(timeout=PAGE_TIMEOUT_MS)
        listed = options.all_inner_texts()
        assert "maskrcnn_random.pth — Mask R-CNN, 3 classes" in listed, listed
        assert "keypointrcnn_random.pth — Keypoint R-CNN, 2 classes, 17 keypoints" in listed, listed
        assert "retina_mmdet.pth — mmdetection RetinaNet, 4 classes" in listed, listed
        page.screenshot(path=str(SHOTS / "models_sidebar.png"), full_page=True)
        page.keyboard.press("Escape")

        # The Detection page: the sidebar's 320 px, then each file; masks and keypoints drawn.
        page.locator("[data-testid='stRadio']").filter(has_text="Input size").get_by_text("sidebar's").click()
        _settle(page)
        body = _detect_with(page, "maskrcnn_random.pth — Mask R-CNN, 3 classes", "models_detection_masks.png")
        assert "maskrcnn_random.pth" in body
        body = _detect_with(
            page, "keypointrcnn_random.pth — Keypoint R-CNN, 2 classes, 17 keypoints", "models_detection_keypoints.png"
        )
        assert "keypointrcnn_random.pth" in body
        page.locator("[data-testid='stRadio']").filter(has_text="Detector").get_by_text(
            "retina_mmdet.pth — mmdetection RetinaNet, 4 classes"
        ).click()
        _settle(page)
        # The rerun may start after the page first looks idle: wait for its text.
        page.get_by_text("its detection heads are not run").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        body = page.inner_text("body")
        assert "its detection heads are not run" in body and "RoIAlign" in body
    finally:
        page.context.close()

    # A feature page with the mmdetection file: its provenance, and P7.
    page = open_in_new_context(
        browser, f"{models_server}/fpn-outputs?input_size=320&weights=file:{MMDET_FILE}", "FPN outputs"
    )
    try:
        page.set_viewport_size(TALL)
        _settle(page)
        body = page.inner_text("body")
        assert f"mmdetection v2 `{MMDET_FILE}`" in body or f"mmdetection v2 {MMDET_FILE}" in body, body[:1500]
        assert "p7" in body
        page.screenshot(path=str(SHOTS / "models_fpn_outputs_mmdet.png"), full_page=True)
    finally:
        page.context.close()
