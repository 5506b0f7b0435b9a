"""The lecture deck: structure read back with python-pptx, the CLI, atomic writes, rendering, the Export button."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from PIL import Image
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.util import Emu

from fpn_core import run_pyramid
from fpn_core.deck import DECK_ABLATIONS, build_deck, run_lesson, write_deck
from fpn_core.detection import build_detector, detect
from fpn_core.images import load_image
from fpn_core.paper import TABLE1
from fpn_core.point import analyse_point
from tests.conftest import run_cli, run_cli_process

SIZE = 128


@pytest.fixture(scope="module")
def deck(random_pyramid, sample):
    model = random_pyramid(out_channels=32)
    image = load_image(sample)
    out = run_pyramid(model, image, size=SIZE)
    det = build_detector("retinanet", weights="random", allow_download=False)
    dets = detect(det, image, 0.0, size=SIZE)
    point = analyse_point(model, image, (120, 80), size=SIZE)
    runs = run_lesson(model, out, image, size=SIZE, detections=dets, point=point)
    data = build_deck(model, out, runs, source=sample.name)
    return out, runs, Presentation(io.BytesIO(data))


def _title(slide) -> str:
    return slide.shapes[0].text_frame.text


def _pictures(slide):
    return [s for s in slide.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE]


def test_deck_is_16_9_with_one_slide_per_step_of_the_lesson(deck):
    out, _, prs = deck
    assert prs.slide_width * 9 == prs.slide_height * 16
    # title, architecture, stages, outputs, one per FPN level, overlays, ablations, probe, detection,
    # receptive fields, stage shares, timing
    assert len(prs.slides) == 4 + len(out.steps) + 7


def test_every_slide_has_a_sharp_picture_notes_and_the_weights_in_its_footer(deck):
    _, _, prs = deck
    for slide in prs.slides:
        pictures = _pictures(slide)
        assert pictures, _title(slide)
        for pic in pictures:
            px_w, _ = pic.image.size
            dpi = px_w / (pic.width / Emu(914400))
            assert dpi >= 150, (_title(slide), dpi)
        notes = slide.notes_slide.notes_text_frame.text
        assert len(notes) > 80, _title(slide)
        footer = slide.shapes[1].text_frame.text
        assert footer.startswith("Weights:") and "random init" in footer, footer


def test_titles_name_levels_strides_shapes_and_widths(deck):
    out, _, prs = deck
    titles = [_title(s) for s in prs.slides]
    assert any("c1..c5" in t for t in titles)
    for level, step in out.steps.items():
        tensor = step.output
        shape = "×".join(str(int(v)) for v in tensor.shape)
        assert any(t.startswith(f"{level} · stride {2 ** int(level[1])} · {shape} · width 32") for t in titles), level
    assert any("Receptive fields at (120, 80)" in t for t in titles)


def test_notes_carry_the_pages_text_and_the_numbers(deck):
    _, runs, prs = deck
    notes = {_title(s): s.notes_slide.notes_text_frame.text for s in prs.slides}
    ablation = next(n for t, n in notes.items() if t.startswith("Ablations"))
    for name in DECK_ABLATIONS:
        assert str(TABLE1[name].ar) in ablation
    probe = next(n for t, n in notes.items() if t.startswith("Scale probe"))
    assert "Reading the table: paper k is the rule before clamping" in probe  # the page's text, markdown removed
    detection = next(n for t, n in notes.items() if t.startswith("Detections"))
    assert "Level: the level of the anchor that produced the box." in detection
    assert "random init" in detection or "Untrained" in detection
    shares = next(n for t, n in notes.items() if t.startswith("Stage shares"))
    assert "Why the split is exact." in shares and "%" in shares
    rf = next(n for t, n in notes.items() if t.startswith("Receptive fields"))
    assert f"theoretical RF {runs.point.erf.theoretical_rf_px['p3']} px" in rf


def test_write_deck_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "lecture.pptx"
    target.write_bytes(b"old deck")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr("fpn_core.deck.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_deck(b"new deck", target)
    assert target.read_bytes() == b"old deck"
    assert [p.name for p in tmp_path.iterdir()] == ["lecture.pptx"]  # no temporary file left
    monkeypatch.undo()
    assert write_deck(b"new deck", target) == target
    assert target.read_bytes() == b"new deck"


def test_cli_deck_writes_a_deck_and_refuses_bad_input(tmp_path, test_env, sample, capsys):
    out = tmp_path / "sub" / "lecture.pptx"
    args = ["--weights", "random", "--width", "32", "--size", str(SIZE), "--repeats", "1", "--no-download"]
    done = run_cli_process(test_env, "deck", sample, "--out", out, *args, "--point", "100,60")
    assert done.returncode == 0, done.stderr
    assert "slides" in done.stdout
    assert len(Presentation(str(out)).slides) > 10
    assert [p.name for p in out.parent.iterdir()] == ["lecture.pptx"]
    for bad in (
        ["deck", tmp_path / "missing.jpg", "--out", tmp_path / "x.pptx"],
        ["deck", sample, "--out", tmp_path / "x.pptx", "--detector", "yolo"],
        ["deck", sample, "--out", tmp_path / "x.txt"],
        ["deck", sample, "--out", tmp_path / "x.pptx", "--point", "nope"],
    ):
        code, _, err = run_cli(capsys, *bad, *args)  # the refusals in this process: no start-up each
        assert code == 2, (bad, err)
        assert err.strip().count("\n") == 0 and err.startswith("error:"), err
        assert not (tmp_path / "x.pptx").exists()


@pytest.mark.skipif(
    not (shutil.which("soffice") and shutil.which("pdftoppm")),
    reason="LibreOffice (libreoffice-impress-nogui) and poppler-utils are needed to render the deck",
)
def test_deck_renders_in_libreoffice(deck, tmp_path):
    _, _, prs = deck
    path = tmp_path / "lecture.pptx"
    prs.save(str(path))
    subprocess.run(
        ["soffice", "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path), str(path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(tmp_path / "lecture.pdf"), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == len(prs.slides)
    for page in pages:
        with Image.open(page) as img:
            w, h = img.size
            assert abs(w / h - 16 / 9) < 0.02
            assert len(img.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50, page.name  # not blank


def test_export_page_offers_the_lecture_deck_made_from_its_settings_and_point():
    from tests.conftest import open_page
    from tests.test_teaching_pages import _analyse, _settings
    from ui import export_page

    at = open_page("pages/8_Export.py")
    assert not at.exception, [e.value for e in at.exception]
    assert "Lecture deck (.pptx)" in [b.label for b in at.get("download_button")]

    settings = _settings("scales-deck", stages=("c4", "c5"), p6=False, out_channels=16)
    analysis = _analyse(settings)
    point = ((40, 30), None, "abs")
    data = export_page.lecture_deck(settings, analysis, None, point)
    prs = Presentation(io.BytesIO(data))
    titles = [_title(s) for s in prs.slides]
    assert any(t.startswith("Receptive fields at (40, 30)") for t in titles), titles
    assert any(t.startswith("Detections by level: no detector") for t in titles)  # no boxes shown on the page
    assert any(t.startswith("p4 · stride 16") and "width 16" in t for t in titles)
