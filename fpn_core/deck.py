"""The lecture deck: the whole lesson of one analysis as a 16:9 PowerPoint deck with speaker notes.

:func:`run_lesson` computes what the deck shows beyond the analysis itself (the paper's ablations
on the same backbone pass, the scale probe on the synthetic scales image, the step table with
FLOPs, and optionally a detector's result and one point's receptive fields and stage shares);
:func:`build_deck` lays it out with ``python-pptx`` (no hand-written XML), in the lesson's order:

 1. title (image, configuration, weights, date)     7. ablations against the paper's Table 1
 2. the architecture with live shapes               8. the scale probe and the level rule
 3. backbone stages c1..c5                          9. detections by level, objectness per level
 4. FPN outputs p_k side by side                   10. receptive fields and stage shares at the point
 5. c_k → lateral → top-down → p_k, one per level  11. timing per step
 6. overlays of each level on the image

Every slide carries a picture rendered at :data:`DECK_DPI` (≥ 150 dpi as placed: a figure is sized
to its box and never enlarged), a footer naming the weights ("random init" where it applies) and
speaker notes: the explanation the dashboard's page shows, read from the same engine text, then the
numbers behind the picture. :func:`write_deck` writes atomically (temporary file, then a rename).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.util import Emu, Inches, Pt

from .backbone import STAGES_INTRO
from .compare import compare_levels
from .contributions import TEACH_SHARES
from .detection import Detections
from .detection.figure import detection_figure
from .detection.specs import DETECTION_INTRO
from .diagram import DiagramShapes, architecture_figure
from .figures import (
    bar_figure,
    line_figure,
    maps_row_figure,
    shares_figure,
    slide_figure,
)
from .fpn import LEVELS_INTRO, STEPS_INTRO
from .lesson import level_lesson
from .levels import stage_of, stride_of
from .maps import OVERLAYS_INTRO, MapStyle, aggregate_channels, map_range, map_ranges, map_stats, overlay
from .paper import LEVEL_RULE, TABLE1, TABLE1_BASELINE, TABLE1_SOURCE, WHAT_AN_FPN_IS, ablation_note
from .point import PointAnalysis
from .probe import (
    PROBE_INTRO,
    RANDOM_WEIGHTS_TEXT,
    READING_TEXT,
    SCALES_TEXT,
    assign_level_k,
    box_responses,
    scale_boxes,
)
from .pyramid import Pyramid, PyramidOutput, assemble_pyramid, count_flops, count_parameters, run_fpn, run_pyramid
from .receptive import INTRO as RF_INTRO
from .receptive import TEACH_ERF, TEACH_FPN, TEACH_RF, erf_overlay, growth_text
from .report import LEVEL_BAR_TEXT, PART_FPN, TIMING_INTRO, StepTable, runs_text, step_table, timing_title
from .scales import Box, make_scales_image

__all__ = [
    "DECK_ABLATIONS",
    "DECK_DPI",
    "LessonRuns",
    "build_deck",
    "deck_slide_count",
    "run_lesson",
    "write_deck",
]

#: Resolution every picture is rendered at; pictures are never enlarged, so this is the least dpi as placed.
DECK_DPI = 160
#: The paper's Table 1 variants the ablation slide sets beside the full FPN.
DECK_ABLATIONS: tuple[str, ...] = ("full", "no-top-down", "no-lateral")
SLIDE_W_IN, SLIDE_H_IN = 13.333, 7.5
_MARGIN = 0.35
_TITLE_TOP, _TITLE_H = 0.2, 0.8
_BODY_TOP = _TITLE_TOP + _TITLE_H + 0.1
_FOOTER_H = 0.35
_BODY_H = SLIDE_H_IN - _BODY_TOP - _FOOTER_H - 0.2
_BODY_W = SLIDE_W_IN - 2 * _MARGIN
_INK = RGBColor(0x1F, 0x29, 0x33)
_MUTED = RGBColor(0x55, 0x65, 0x7A)


@dataclass(frozen=True)
class LessonRuns:
    """What the deck shows besides the analysis itself.

    Attributes:
        ablations: each of :data:`DECK_ABLATIONS` run on the analysis' own backbone pass.
        probe: the pyramid on the synthetic scales image; probe_boxes: its shapes' boxes, in the pixels of
            the network input (``probe.image``).
        steps: the step table with FLOPs and parameters.
        detections: a detector's result on the image, or None (the detection slide then says how to add one).
        point: receptive fields and stage shares at one point, or None (likewise).
    """

    ablations: dict[str, PyramidOutput]
    probe: PyramidOutput
    probe_boxes: tuple[Box, ...]
    steps: StepTable
    detections: Detections | None = None
    point: PointAnalysis | None = None


def run_lesson(
    model: Pyramid,
    out: PyramidOutput,
    image: np.ndarray,
    *,
    size: int,
    detections: Detections | None = None,
    point: PointAnalysis | None = None,
) -> LessonRuns:
    """Compute the ablations, the scale probe and the step table for :func:`build_deck`.

    Args:
        model: the pyramid that made ``out`` (read-only).
        out: its analysis of ``image``.
        image: the image as loaded (RGB uint8).
        size: the long side of the network input ``out`` used.
        detections: optional, from ``fpn_core.detection.detect`` on the same image.
        point: optional, from ``fpn_core.point.analyse_point`` on the same image.
    """
    ablations: dict[str, PyramidOutput] = {}
    for name in DECK_ABLATIONS:
        if name == out.config.ablation:
            ablations[name] = out
            continue
        variant = assemble_pyramid(model.backbone, dataclasses.replace(out.config, ablation=name))
        fpn = run_fpn(variant.fpn, out.stages, variant.config)
        ablations[name] = PyramidOutput.compose(variant, out.backbone, fpn, repeats=1)
    scales = make_scales_image()
    probe = run_pyramid(model, scales.image, size=size)
    table = step_table(model, out, count_flops(model, image, size=size), count_parameters(model))
    boxes = scale_boxes(scales.boxes, scales.image.shape[:2], probe.image.shape[:2])
    return LessonRuns(ablations, probe, tuple(boxes), table, detections, point)


# --------------------------------------------------------------------------- text helpers


def _plain(markdown: str) -> str:
    """Markdown as plain text for speaker notes: no emphasis marks, no code ticks, single spaces."""
    text = re.sub(r"\*\*|(?<![\w*])\*(?=\S)|(?<=\S)\*(?![\w*])|`", "", markdown)
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def _stats_line(name: str, tensor, stats: Mapping[str, float] | None = None) -> str:
    """One tensor's shape, stride, width and statistics (``stats``: its ``map_stats`` when known)."""
    s = stats if stats is not None else map_stats(tensor)
    return (
        f"{name}: shape {_shape(tensor.shape)}, stride {stride_of(name)}, {int(tensor.shape[1])} channels; "
        f"mean {s['mean']:.3g}, std {s['std']:.3g}, min {s['min']:.3g}, max {s['max']:.3g}, "
        f"exact zeros {s['sparsity']:.0%}"
    )


def _weights_footer(out: PyramidOutput) -> str:
    p = out.provenance
    backbone = p.backbone if p.pretrained or "random init" in p.backbone else f"random init ({p.backbone})"
    fpn = p.fpn if p.fpn_pretrained or "random init" in p.fpn else f"random init ({p.fpn})"
    return f"Weights: backbone {backbone}; FPN {fpn}"


# --------------------------------------------------------------------------- layout


class _Deck:
    """A presentation being filled, one titled slide with a picture, footer and notes at a time."""

    def __init__(self, footer: str) -> None:
        self.prs = Presentation()
        self.prs.slide_height = Inches(SLIDE_H_IN)
        self.prs.slide_width = Emu(self.prs.slide_height * 16 // 9)  # exactly 16:9
        self.footer = footer

    def slide(self, title: str, notes: str):
        slide = self.prs.slides.add_slide(self.prs.slide_layouts[6])  # blank
        box = slide.shapes.add_textbox(Inches(_MARGIN), Inches(_TITLE_TOP), Inches(_BODY_W), Inches(_TITLE_H))
        frame = box.text_frame
        frame.word_wrap = True
        run = frame.paragraphs[0].add_run()
        run.text = title
        run.font.size, run.font.bold, run.font.color.rgb = Pt(24 if len(title) < 80 else 20), True, _INK
        foot = slide.shapes.add_textbox(
            Inches(_MARGIN), Inches(SLIDE_H_IN - _FOOTER_H - 0.1), Inches(_BODY_W), Inches(_FOOTER_H)
        )
        foot_run = foot.text_frame.paragraphs[0].add_run()
        foot_run.text = self.footer
        foot_run.font.size, foot_run.font.color.rgb = Pt(11), _MUTED
        slide.notes_slide.notes_text_frame.text = notes.strip()
        return slide

    def text(self, slide, left: float, top: float, width: float, height: float, lines: Sequence[str], pt: int = 16):
        frame = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height)).text_frame
        frame.word_wrap = True
        for i, line in enumerate(lines):
            para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
            run = para.add_run()
            run.text = line
            run.font.size, run.font.color.rgb = Pt(pt), _INK

    def figure(self, slide, fig: Figure, left: float, top: float, width: float, height: float) -> None:
        """Size ``fig`` to the box, render it at DECK_DPI and place it centred, never enlarged."""
        fig.set_size_inches(width, height)
        self.png(slide, _render(fig), left, top, width, height)

    def png(self, slide, png: bytes, left: float, top: float, width: float, height: float) -> None:
        with Image.open(io.BytesIO(png)) as img:
            px_w, px_h = img.size
        natural_w, natural_h = px_w / DECK_DPI, px_h / DECK_DPI
        shrink = min(1.0, width / natural_w, height / natural_h)
        w_in, h_in = natural_w * shrink, natural_h * shrink
        slide.shapes.add_picture(
            io.BytesIO(png),
            Emu(int(Inches(left + (width - w_in) / 2))),
            Emu(int(Inches(top + (height - h_in) / 2))),
            Emu(int(Inches(w_in))),
            Emu(int(Inches(h_in))),
        )

    def body_figure(self, slide, fig: Figure, height: float = _BODY_H) -> None:
        """``fig`` across the body, ``height`` inches tall (at most the body's), centred in the body."""
        height = min(height, _BODY_H)
        self.figure(slide, fig, _MARGIN, _BODY_TOP + (_BODY_H - height) / 2, _BODY_W, height)

    def save(self) -> bytes:
        buffer = io.BytesIO()
        self.prs.save(buffer)
        return buffer.getvalue()


def _row_height(panels: int, aspect: float) -> float:
    """Inches a one-row figure of ``panels`` maps of ``aspect`` (height / width) needs across the body:
    the maps, plus room for the suptitle, two-line panel titles, the cell counts and color bars."""
    return _BODY_W / panels * aspect + 1.9


def _render(fig: Figure) -> bytes:
    """The figure as PNG at DECK_DPI, drawn once (a constrained layout fills its box, so no tight crop)."""
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(DECK_DPI)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    buffer = io.BytesIO()
    # Fast compression: the deck is rebuilt on demand, and zlib's default level costs seconds here. The figure
    # is not cleared afterwards (that rebuilds every axis' ticks); nothing else holds it, so it is collected.
    Image.fromarray(rgba[..., :3]).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _missing_slide(deck: _Deck, title: str, intro: str, how: str, image: np.ndarray, caption: str) -> None:
    """A lesson slide whose input was not given (no detector, no point): the image, and how to add it."""
    slide = deck.slide(title, _plain(intro) + f"\n\n{how}")
    deck.body_figure(slide, _image_figure(image, caption))


def _image_figure(image: np.ndarray, caption: str) -> Figure:
    fig = Figure(layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(image, interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(caption, fontsize=12)
    return fig


def _grid_figure(panels: Sequence[tuple[str, np.ndarray]], *, cols: int, suptitle: str) -> Figure:
    """RGB images in a grid with titles (ERF and objectness overlays)."""
    rows = -(-len(panels) // cols)
    fig = Figure(layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_visible(False)
    for ax, (title, picture) in zip(axes, panels, strict=False):
        ax.set_visible(True)
        ax.imshow(picture, interpolation="antialiased")
        ax.set_title(title, fontsize=11)
    fig.suptitle(suptitle, fontsize=14)
    return fig


def _ablation_figure(runs: Mapping[str, PyramidOutput], aggregation: str, colormap: str) -> Figure:
    """One row per ablation, one column per level, each map on its own color scale."""
    names = list(runs)
    levels = list(runs[names[0]].levels)
    fig = Figure(layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), len(levels), squeeze=False)
    for r, name in enumerate(names):
        row = TABLE1[name]
        for c, level in enumerate(levels):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            tensor = runs[name].levels.get(level)
            if tensor is None:
                ax.set_facecolor("#F1F4F8")
                ax.text(0.5, 0.5, "no output", ha="center", va="center", fontsize=10)
            else:
                m = aggregate_channels(tensor, aggregation)
                rng = map_range([m])
                ax.imshow(m, cmap=colormap, vmin=rng.vmin, vmax=rng.vmax, interpolation="nearest")
            if r == 0:
                ax.set_title(f"{level} · stride {stride_of(level)}", fontsize=11)
            if c == 0:
                ax.set_ylabel(f"{name}\nAR1k {row.ar} / small {row.ar_small}", fontsize=10)
    fig.suptitle(f"channel {aggregation} per level; rows: ablations with the paper's AR1k (Table 1)", fontsize=13)
    return fig


# --------------------------------------------------------------------------- the slides


def build_deck(
    model: Pyramid,
    out: PyramidOutput,
    runs: LessonRuns,
    *,
    style: MapStyle | None = None,
    source: str | None = None,
    date: _dt.date | None = None,
) -> bytes:
    """The lecture deck of one analysis, as ``.pptx`` bytes.

    Args:
        model: the pyramid that made ``out``.
        out: the analysis (``run_pyramid``).
        runs: from :func:`run_lesson` on the same analysis.
        style: color map, alpha, channel aggregation and color scope of the maps.
        source: where the image came from (its file name), for the title slide.
        date: the date on the title slide (default: today).

    Returns:
        The presentation file's bytes.
    """
    style = style or MapStyle()
    date = date or _dt.date.today()
    deck = _Deck(_weights_footer(out))
    config = out.config
    d = config.out_channels
    h, w = out.image.shape[:2]
    stages, levels = out.stages, out.levels
    reduced = {n: aggregate_channels(t, style.aggregation) for n, t in {**stages, **levels}.items()}
    ranges = {
        **map_ranges({n: reduced[n] for n in stages}, style.scope),
        **map_ranges({n: reduced[n] for n in levels}, style.scope),
    }
    label = f"channel {style.aggregation} activation"
    level_list = list(levels)
    first, last = level_list[0], level_list[-1]
    stage_names = list(stages)
    aspect = h / w
    stats = {n: map_stats(t) for n, t in {**stages, **levels}.items()}

    # 1. title
    p = out.provenance
    config_line = (
        f"FPN on {', '.join(config.stages)} · width d = {d} · {config.upsample} upsampling · {config.merge} merge"
        f" · p6 {'on' if config.p6 else 'off'} · ablation {config.ablation}"
    )
    slide = deck.slide(
        "Feature Pyramid Networks, on one image",
        _plain(WHAT_AN_FPN_IS) + f"\n\nThis deck: {source or 'image'}, network input {w} × {h} px; {config_line}.",
    )
    deck.text(
        slide,
        _MARGIN,
        _BODY_TOP + 0.2,
        5.6,
        _BODY_H - 0.4,
        [
            f"Image: {source or 'image'} ({w} × {h} px at the network input)",
            f"ResNet-50 + FPN: {config_line}",
            f"Backbone weights: {p.backbone}" + ("" if p.pretrained else " (random init: untrained)"),
            f"FPN weights: {p.fpn}" + ("" if p.fpn_pretrained else " (random init: untrained)"),
            f"Device: {out.device}",
            f"Date: {date.isoformat()}",
            "Made with FPN Explorer",
        ],
    )
    deck.figure(slide, _image_figure(out.image, f"input {w} × {h} px"), 6.3, _BODY_TOP, 6.65, _BODY_H)

    # 2. architecture
    shapes = DiagramShapes.of(out)
    slide = deck.slide(
        f"Architecture: ResNet-50 c1..c5 + FPN on {stage_names and config.stages[0]}..{config.stages[-1]}, "
        f"width {d}, levels {first}..{last}",
        "Your pyramid, live: every box holds the real shape (channels × height × width) for this image.\n"
        + "\n".join(f"{n}: {_shape(s)} (stride {stride_of(n)})" for n, s in {**shapes.stages, **shapes.levels}.items())
        + "".join(f"\ntop-down into {lv}: {_shape(s)}" for lv, s in shapes.top_down.items()),
    )
    deck.body_figure(slide, architecture_figure(config, model.feature_info, shapes))

    # 3. backbone stages
    widths = ", ".join(str(int(t.shape[1])) for t in stages.values())
    slide = deck.slide(
        f"Backbone stages c1..c5: strides {stride_of('c1')}..{stride_of('c5')}, widths {widths}",
        _plain(STAGES_INTRO) + "\n\n" + "\n".join(_stats_line(n, t, stats[n]) for n, t in stages.items()),
    )
    deck.body_figure(
        slide,
        maps_row_figure(
            [(f"{n} · stride {stride_of(n)}\n{_shape(t.shape[1:])}", reduced[n]) for n, t in stages.items()],
            rngs=[ranges[n] for n in stages],
            colormap=style.colormap,
            suptitle=f"{label} of each backbone stage",
            colorbar_label=label,
        ),
        _row_height(len(stages), aspect),
    )

    # 4. FPN outputs
    slide = deck.slide(
        f"FPN outputs {first}..{last}: strides {stride_of(first)}..{stride_of(last)}, width {d} at every level",
        _plain(LEVELS_INTRO) + "\n\n" + "\n".join(_stats_line(n, t, stats[n]) for n, t in levels.items()),
    )
    deck.body_figure(
        slide,
        maps_row_figure(
            [(f"{n} · stride {stride_of(n)}\n{_shape(t.shape[1:])}", reduced[n]) for n, t in levels.items()],
            rngs=[ranges[n] for n in levels],
            colormap=style.colormap,
            suptitle=f"{label} of each level, width d = {d}",
            colorbar_label=label,
        ),
        _row_height(len(levels), aspect),
    )

    # 5. one slide per level: c_k -> lateral -> top-down -> merged -> p_k, the Step by step page's panels and prose
    step_rows = runs.steps.fpn_steps()
    for level, step in reversed(list(out.steps.items())):  # coarse to fine, as the top-down path runs
        stage = stage_of(level)
        output = step.output if step.output is not None else step.merged
        lesson = level_lesson(level, stages[stage], step, config)
        maps = [
            None
            if p.tensor is None
            else reduced[stage]
            if p.step == "stage"
            else reduced[level]
            if p.step == "output" and level in reduced
            else aggregate_channels(p.tensor, style.aggregation)
            for p in lesson
        ]
        numbers = [
            f"{r.key}: {r.what}; output {_shape(r.shape)}; {r.ms:.2f} ms, {r.flops / 1e9:.3f} GFLOPs, "
            f"{r.params:,} parameters"
            for r in step_rows.get(level, [])
        ]
        numbers += [_stats_line(stage, stages[stage], stats[stage])]
        if step.output is not None:
            numbers.append(_stats_line(level, step.output, stats.get(level)))
        slide = deck.slide(
            f"{level} · stride {stride_of(level)} · {_shape(output.shape)} · width {int(output.shape[1])}: "
            f"{stage} → lateral → top-down → {level}",
            _plain(STEPS_INTRO)
            + "\n\n"
            + "\n".join(f"{p.title}: {_plain(p.caption)}" for p in lesson)
            + "\n\n"
            + "\n".join(numbers),
        )
        deck.body_figure(
            slide,
            maps_row_figure(
                [(p.title, m) for p, m in zip(lesson, maps, strict=True)],
                rngs=[None if m is None else map_range([m]) for m in maps],
                missing=[p.missing for p in lesson],
                colormap=style.colormap,
                suptitle=f"{stage} → {level}: each panel on its own color scale ({label})",
                colorbar_label=label,
            ),
            _row_height(len(lesson), aspect),
        )

    # 6. overlays
    level_names = list(levels)
    slide = deck.slide(
        f"Overlays of {first}..{last} on the image: strides {stride_of(first)}..{stride_of(last)}, width {d}",
        _plain(OVERLAYS_INTRO)
        + "\n\n"
        + "\n".join(
            f"{n}: map {t.shape[-1]} × {t.shape[-2]} cells shown at {w} × {h} px; color range "
            f"{ranges[n].vmin:.3g} to {ranges[n].vmax:.3g}"
            for n, t in levels.items()
        ),
    )
    deck.body_figure(
        slide,
        slide_figure(
            out.image,
            [(f"{n} · stride {stride_of(n)} · width {d}", reduced[n]) for n in level_names],
            rngs=[ranges[n] for n in level_names],
            alpha=style.alpha,
            colormap=style.colormap,
            suptitle=f"FPN levels over the image, {label}",
            colorbar_label=label,
        ),
    )

    # 7. ablations against Table 1
    full = runs.ablations.get("full", out)
    compare_lines = []
    for name, variant in runs.ablations.items():
        compare_lines.append(_plain(ablation_note(name)))
        if name != "full":
            for cmp in compare_levels(full.levels, variant.levels, aggregation=style.aggregation):
                compare_lines.append(
                    f"  {cmp.level}, full vs {name}: correlation {cmp.stats['correlation']:.3f}, "
                    f"mean |difference| {cmp.stats['mean |difference| (std units)']:.3f} std"
                )
    slide = deck.slide(
        f"Ablations on {first}..{last}: full FPN, no top-down, no lateral (paper, Table 1)",
        f"{TABLE1_SOURCE}. Single c4 map: AR1k {TABLE1_BASELINE.ar}, small {TABLE1_BASELINE.ar_small}.\n"
        + "\n".join(compare_lines),
    )
    deck.body_figure(slide, _ablation_figure(runs.ablations, style.aggregation, style.colormap))

    # 8. scale probe
    probe = runs.probe
    net_boxes = runs.probe_boxes
    rows = box_responses(probe.levels, net_boxes, probe.image.shape[:2], aggregation=style.aggregation)
    by_box: dict[str, dict] = {}
    for row in rows:
        entry = by_box.setdefault(
            row["box"],
            {"size": row["size_px"], "rule": row["rule_level"], "strongest": row["strongest"], "xyxy": row["xyxy"]},
        )
        entry[row["level"]] = row["relative"]
    sizes = [float(e["size"]) for e in by_box.values()]
    series = {lv: [float(e[lv]) for e in by_box.values()] for lv in probe.levels}
    agree = sum(1 for e in by_box.values() if e["rule"] == e["strongest"])
    probe_lines = [
        f"{label_}: size {e['size']:.1f} px at input, paper k {_paper_k(e['xyxy'])}, "
        f"paper level {e['rule']}, strongest {e['strongest']}; " + ", ".join(f"{lv} {e[lv]:.2f}" for lv in probe.levels)
        for label_, e in by_box.items()
    ]
    ph, pw = probe.image.shape[:2]
    slide = deck.slide(
        f"Scale probe on {first}..{last}: which level answers which size; the rule {LEVEL_RULE}",
        "\n".join(
            [_plain(PROBE_INTRO), _plain(SCALES_TEXT), _plain(READING_TEXT)]
            + ([RANDOM_WEIGHTS_TEXT] if not out.provenance.pretrained else [])
        )
        + f"\n\nNetwork input {pw} × {ph} px. Response: std above the level's mean inside each box. "
        f"The strongest level matches the rule for {agree} of {len(by_box)} boxes.\n" + "\n".join(probe_lines),
    )
    deck.figure(slide, _boxes_figure(probe.image, net_boxes, by_box), _MARGIN, _BODY_TOP, 5.4, _BODY_H)
    deck.figure(
        slide,
        line_figure(
            sizes,
            series,
            title="Response per level vs object size",
            xlabel="object size √(w·h), px in the network input",
            ylabel="response (std above level mean)",
            logx=len(set(sizes)) == len(sizes) and min(sizes) > 0,
        ),
        _MARGIN + 5.6,
        _BODY_TOP,
        _BODY_W - 5.6,
        _BODY_H,
    )

    # 9. detections
    dets = runs.detections
    if dets is None:
        _missing_slide(
            deck,
            "Detections by level: no detector was run for this deck",
            DETECTION_INTRO,
            "Run the deck with a detector (--detector, or the Detection page).",
            out.image,
            "no detector run",
        )
    else:
        spec = dets.spec
        trained = dets.provenance is None or dets.provenance.pretrained
        counts = dets.count_per_level()
        obj = dets.objectness_maps()
        noise = "" if trained else " (untrained detector: noise)"
        slide = deck.slide(
            f"Detections by level: {spec.title} on {dets.level_names[0]}..{dets.level_names[-1]}, "
            f"{len(dets)} boxes ≥ {dets.score_threshold:.2f}{noise}",
            _plain(DETECTION_INTRO)
            + f"\nLevel: {spec.level_source}.\nObjectness maps: each level's {spec.objectness}."
            + ("" if trained else "\nUntrained detector (random init): boxes, classes, scores and maps are noise.")
            + f"\n\nNetwork input {dets.input_hw[1]} × {dets.input_hw[0]} px. Detections per level: "
            + ", ".join(f"{lv} {n}" for lv, n in counts.items())
            + ".\nObjectness per level: "
            + "; ".join(f"{lv} max {float(m.max()):.3f}, mean {float(m.mean()):.3f}" for lv, m in obj.items())
            + "\nAnchors: "
            + "; ".join(f"{lv} {'/'.join(f'{s:g}' for s in a.sizes)} px" for lv, a in dets.anchors.items())
            + "".join(
                f"\n{r['class']} {r['score']:.2f} at {', '.join(f'{v:.0f}' for v in r['box'])}: level {r['level']}, "
                f"paper k {r['paper_k']}"
                for r in dets.as_dict()["detections"][:20]
            ),
        )
        deck.figure(slide, detection_figure(out.image, dets), _MARGIN, _BODY_TOP, 6.0, _BODY_H)
        rng = map_ranges(obj, "per-level")
        deck.figure(
            slide,
            _grid_figure(
                [
                    (
                        f"{lv} · stride {stride_of(lv)} · max {float(m.max()):.2f}",
                        overlay(out.image, m, rng=rng[lv], alpha=style.alpha, colormap="inferno"),
                    )
                    for lv, m in obj.items()
                ],
                cols=3,
                suptitle=f"{spec.objectness} per level",
            ),
            _MARGIN + 6.2,
            _BODY_TOP,
            _BODY_W - 6.2,
            _BODY_H,
        )

    # 10. receptive fields and stage shares
    at = runs.point
    if at is None:
        _missing_slide(
            deck,
            "Receptive fields at a point: no point was given for this deck",
            RF_INTRO,
            "Give a point (--point X,Y, or the Receptive fields page).",
            out.image,
            "no point",
        )
    else:
        erf = at.erf
        x, y = erf.point
        names = [n for n in erf.names if n != "c1"]
        radii_lines = [
            f"{n}: cell {erf.cells[n]}, theoretical RF {erf.theoretical_rf_px[n]} px, ERF r50 "
            + ("-" if erf.radii_input_px[n]["50"] is None else f"{erf.radii_input_px[n]['50']:.1f}")
            + " / r90 "
            + ("-" if erf.radii_input_px[n]["90"] is None else f"{erf.radii_input_px[n]['90']:.1f}")
            + " px"
            + ("" if erf.ratio[n] is None else f", ERF/RF {erf.ratio[n]:.2f}")
            for n in names
        ]
        slide = deck.slide(
            f"Receptive fields at ({x:g}, {y:g}): stages {names[0]}..c5 and levels {first}..{last}",
            "\n".join(_plain(t) for t in (RF_INTRO, growth_text(erf), TEACH_RF, TEACH_ERF, TEACH_FPN))
            + "\n\nAll in network-input pixels.\n"
            + "\n".join(radii_lines),
        )
        deck.body_figure(
            slide,
            _grid_figure(
                [
                    (
                        f"{n} · stride {stride_of(n)} · RF {erf.theoretical_rf_px[n]} px",
                        erf_overlay(erf.image, erf.maps[n], box=erf.boxes[n], alpha=0.6, colormap="inferno"),
                    )
                    for n in names
                ],
                cols=max(4, -(-len(names) // 2)),
                suptitle=f"Where one cell looks at ({x:g}, {y:g}): effective RF (color), theoretical RF (white)",
            ),
        )
        shares = at.shares_at
        contributions = at.contributions
        share_rows: dict[str, Mapping[str, float]] = {}
        for lv in contributions.levels:
            share_rows[f"{lv} whole"] = contributions.shares[lv]
            if lv in shares:
                share_rows[f"{lv} at point"] = shares[lv]
        slide = deck.slide(
            f"Stage shares of {contributions.levels[0]}..{contributions.levels[-1]} at ({x:g}, {y:g}): "
            f"where each level's signal comes from",
            _plain(TEACH_SHARES)
            + "\n\n"
            + "\n".join(at.sentence(lv) + " " + at.sentence(lv, whole_level=True) for lv in contributions.levels)
            + "\n"
            + "\n".join(
                f"{row}: " + ", ".join(f"{s} {v:.1%}" for s, v in values.items()) for row, values in share_rows.items()
            ),
        )
        deck.body_figure(slide, shares_figure(share_rows, title="Stage shares per level (L1 of the contributions)"))

    # 11. timing
    table = runs.steps
    per_level: dict[str, float] = {}
    groups: dict[str, str] = {}
    for row in sorted(table.rows, key=lambda r: (r.part == PART_FPN, r.level)):
        key = f"{row.level} (FPN)" if row.part == PART_FPN else row.level
        per_level[key] = per_level.get(key, 0.0) + row.ms
        groups[key] = row.part
    slide = deck.slide(
        f"Timing per step: backbone c1..c5 and FPN {first}..{last}, width {d}, {w} × {h} px input",
        _plain(TIMING_INTRO)
        + " "
        + LEVEL_BAR_TEXT
        + f"\n\nMedian of {runs_text(table.repeats)} on {table.device}. Backbone {table.backbone.ms:.1f} ms, "
        f"{table.backbone.flops / 1e9:.2f} GFLOPs, {table.backbone.params:,} parameters; FPN {table.fpn.ms:.1f} ms, "
        f"{table.fpn.flops / 1e9:.2f} GFLOPs, {table.fpn.params:,} parameters.\n"
        + "\n".join(
            f"{r.key}: {r.what}; {_shape(r.shape)}; {r.ms:.2f} ms, {r.flops / 1e9:.3f} GFLOPs, {r.output_mb:.2f} MB"
            for r in table.rows
        ),
    )
    deck.body_figure(
        slide,
        bar_figure(
            list(per_level),
            list(per_level.values()),
            title=timing_title(table.repeats, table.device),
            xlabel="milliseconds",
            groups=[groups[k] for k in per_level],
        ),
    )
    return deck.save()


def _paper_k(xyxy: Sequence[float]) -> int | None:
    x0, y0, x1, y1 = xyxy
    return assign_level_k(x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _boxes_figure(image: np.ndarray, boxes: Sequence[Box], by_box: Mapping[str, Mapping]) -> Figure:
    """The scales image with each box, its paper level and the level that answered most strongly."""
    from matplotlib.patches import Rectangle

    fig = Figure(layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    # Sizes at the network input (the plot's x axis); neighbours' labels alternate below and above their
    # boxes, so small boxes side by side do not overwrite each other's text.
    for i, box in enumerate(sorted(boxes, key=lambda b: b.x0)):
        entry = by_box[box.label]
        ax.add_patch(Rectangle((box.x0, box.y0), box.width, box.height, fill=False, edgecolor="#EB5A14", linewidth=2))
        below = i % 2 == 0
        ax.text(
            box.x0, box.y1 + 2 if below else box.y0 - 2,
            f"{entry['size']:.0f} px\nrule {entry['rule']}\nstrongest {entry['strongest']}",
            fontsize=10, va="top" if below else "bottom", ha="left",
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5},
        )  # fmt: skip
    h, w = image.shape[:2]
    ax.set_title(f"scales image at the network input, {w} × {h} px", fontsize=13)
    return fig


# --------------------------------------------------------------------------- writing


def write_deck(data: bytes, path: Path | str) -> Path:
    """Write a deck atomically: into a temporary file in the target folder, then renamed into place.

    A failure leaves no half-written deck (and an existing file of that name untouched).

    Raises:
        OSError: if the folder cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def deck_slide_count(data: bytes) -> int:
    """How many slides a deck's bytes hold."""
    return len(Presentation(io.BytesIO(data)).slides)
