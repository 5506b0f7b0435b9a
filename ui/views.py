"""Reusable page parts: the cached analysis, screen maps, captions, the diagram, the timing panel.

Pages call these with results from ``ui.cache``; nothing here computes a model.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd
import streamlit as st
import torch

from fpn_core import FeatureInfo, Pyramid, PyramidConfig, WeightsError, count_parameters, stride_of
from fpn_core.figures import bar_figure
from fpn_core.levels import level_above, level_below, level_of, level_of_step
from fpn_core.maps import MapRange, MapStyle, map_stats
from ui import cache, panels
from ui import settings as S

log = logging.getLogger(__name__)

T = TypeVar("T")
#: The range of maps already scaled to 0..1 (channel tiles).
UNIT_RANGE = MapRange(0.0, 1.0)


# ----------------------------------------------------------------------------- analysis


def load_analysis(
    settings: S.Settings, config: PyramidConfig | None = None, *, image: S.ImageChoice | None = None
) -> cache.Analysis | None:
    """The cached analysis for the current settings, with a spinner; errors become messages.

    Args:
        settings: the sidebar settings (image, size and device come from here).
        config: the pyramid to run; None uses the sidebar's.
        image: an image other than the sidebar's (e.g. the scales image).

    Returns:
        The analysis, or None (a message has been shown) when there is no image or it failed.
    """
    image = image or settings.image
    if image is None:
        st.info("Choose an image in the sidebar (a sample, the synthetic scales image, an upload or a photo).")
        return None
    config = settings.config if config is None else config
    return _shown(lambda: cache.analyse(config, image.array, image.digest, settings.size))


def load_backbone_pass(settings: S.Settings) -> cache.BackbonePass | None:
    """The cached backbone pass alone (for pages that show no FPN level), like :func:`load_analysis`."""
    image = settings.image
    if image is None:
        st.info("Choose an image in the sidebar (a sample, the synthetic scales image, an upload or a photo).")
        return None
    return _shown(lambda: cache.analyse_backbone(settings.config, image.array, image.digest, settings.size))


def _shown(run: Callable[[], T]) -> T | None:
    """``run()`` with a spinner; a failure becomes one message, notices become warnings."""
    try:
        with st.spinner("Running the network (cached after the first time)…"):
            result = run()
    except (WeightsError, ValueError) as exc:
        st.error(f"The analysis could not run: {exc}")
        return None
    except Exception:  # any other failure: a message for the user, the traceback for the log
        log.exception("analysis failed")
        st.error("The analysis failed unexpectedly (details are in the server log). Try a smaller input size.")
        return None
    for notice in result.notices:  # type: ignore[attr-defined]
        st.warning(notice)
    return result


# ------------------------------------------------------------------------- screen maps


def stage_maps(
    analysis: cache.Analysis | cache.BackbonePass, style: MapStyle
) -> tuple[dict[str, np.ndarray], dict[str, MapRange]]:
    """The backbone stages' reduced maps and colour ranges (cached per backbone pass and style)."""
    key = analysis.backbone_key
    maps = cache.reduced_maps(key, "stages", style.reduction, analysis.backbone.stages)
    return maps, cache.color_ranges(key, "stages", style.reduction, style.scope, maps)


def level_maps(analysis: cache.Analysis, style: MapStyle) -> tuple[dict[str, np.ndarray], dict[str, MapRange]]:
    """The pyramid levels' reduced maps and colour ranges (cached per analysis and style)."""
    maps = cache.reduced_maps(analysis.key, "levels", style.reduction, analysis.fpn.levels)
    return maps, cache.color_ranges(analysis.key, "levels", style.reduction, style.scope, maps)


#: A level's recorded steps as the FPN outputs page titles them (the merged map is the step page's).
STEP_TITLES: dict[str, str] = {"lateral": "lateral 1×1", "top_down": "top-down (upsampled)", "output": "output"}


def step_maps(analysis: cache.Analysis, level: str, reduction: str) -> dict[str, np.ndarray]:
    """One level's recorded steps (``lateral``, ``top_down``, ``merged``, ``output``) as reduced maps."""
    step = analysis.fpn.steps[level]
    tensors = {
        name: t for name in ("lateral", "top_down", "merged", "output") if (t := getattr(step, name)) is not None
    }
    return cache.reduced_maps(analysis.key, f"{level}.steps", reduction, tensors)


def weights_line(analysis: cache.Analysis | cache.BackbonePass) -> str:
    """``"backbone random (random init), FPN random"``: what a screenshot must say about weights."""
    provenance = analysis.model.provenance
    if isinstance(analysis, cache.BackbonePass):
        return f"backbone {'pretrained' if provenance.pretrained else 'random'} ({provenance.source})"
    return provenance.summary()


# ---------------------------------------------------------------------------- captions


def shape_text(tensor: torch.Tensor) -> str:
    """``"512 × 64 × 64"`` (channels × height × width) of a (1, C, H, W) tensor."""
    return " × ".join(str(int(s)) for s in tensor.shape[-3:])


#: Statistics per feature tensor, by identity: cached tensors are shared and never written, so a
#: rerun that shows the same tensor again looks its numbers up (entries go with the tensor).
_STATS: dict[int, tuple[weakref.ref, dict[str, float]]] = {}


def _stats(tensor: torch.Tensor) -> dict[str, float]:
    entry = _STATS.get(id(tensor))
    if entry is not None and entry[0]() is tensor:
        return entry[1]
    stats = map_stats(tensor)
    key = id(tensor)
    _STATS[key] = (weakref.ref(tensor, lambda _: _STATS.pop(key, None)), stats)
    return stats


def feature_caption(name: str, tensor: torch.Tensor, *, what: str = "") -> str:
    """A one-paragraph caption: name, shape, stride, channels and statistics.

    Args:
        name: ``c1..c5`` or ``p2..p6``.
        tensor: the (1, C, H, W) feature map.
        what: an optional description, e.g. ``"backbone stage (layer2)"``.
    """
    stats = _stats(tensor)
    c, h, w = (int(s) for s in tensor.shape[-3:])
    head = f"**{name}**" + (f" — {what}" if what else "")
    return (
        f"{head} · shape {c} × {h} × {w} (C × H × W) · stride {stride_of(name)} · {c} channels  \n"
        f"mean {stats['mean']:.3g}, std {stats['std']:.3g}, min {stats['min']:.3g}, "
        f"max {stats['max']:.3g}, exact zeros {stats['sparsity']:.0%}"
    )


def stage_description(name: str, info: FeatureInfo) -> str:
    """E.g. ``"backbone stage (layer2)"`` for ``c3``."""
    return f"backbone stage ({info[name].module})"


# ----------------------------------------------------------------------------- diagram


_NODE_STYLE = {
    "stage": 'fillcolor="#DCE8F7", color="#6B8BB5"',
    "unused": 'fillcolor="#F7F7F7", color="#C5CCD6", fontcolor="#8A99AD"',
    "conv": 'fillcolor="#FFF4DB", color="#C9A227"',
    "level": 'fillcolor="#DDF2E3", color="#3C8D5A"',
    "merge": 'shape=circle, fillcolor="#FFFFFF", width=0.4, fixedsize=true',
}


def _node(name: str, label: str, style: str) -> str:
    return f'  {name} [label="{label}", {_NODE_STYLE[style]}];'


def architecture_dot(analysis: cache.Analysis) -> str:
    """A Graphviz DOT diagram of the live pyramid, with real shapes for this image.

    One row per level, coarse at the top: the backbone stage c_k, its lateral 1x1 conv, the
    merge with the upsampled map from the row above, the 3x3 conv and the output p_k; p6 above.
    Shapes are channels × height × width of the tensors computed for the chosen image.
    """
    config = analysis.model.config
    d = config.out_channels
    stages, levels, steps = analysis.backbone.stages, analysis.fpn.levels, analysis.fpn.steps
    h, w = analysis.backbone.image.shape[:2]
    info = analysis.model.feature_info
    up = f"2× {config.upsample}"
    merge = "+" if config.merge == "sum" else "mean"
    lines = [
        "digraph FPN {",
        "  rankdir=BT; nodesep=0.3; ranksep=0.35; newrank=true;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10, color="#55657A"];',
        _node("img", f"image\\n3 × {h} × {w}", "unused").replace("#8A99AD", "#1F2933"),
    ]
    prev = "img"
    for name in ("c1", "c2", "c3", "c4", "c5"):
        label = f"{name} ({info[name].module})\\n{shape_text(stages[name])}\\nstride {stride_of(name)}"
        lines += [_node(name, label, "stage" if name in config.stages else "unused"), f"  {prev} -> {name};"]
        prev = name
    top = config.stages[-1]
    for stage in config.stages:
        level = level_of(stage)
        step = steps.get(level)
        row = [stage, f"lat_{level}"]
        lines.append(_node(f"lat_{level}", f"1×1 conv\\n{int(stages[stage].shape[1])} → {d}", "conv"))
        lines.append(f"  {stage} -> lat_{level};")
        src = f"lat_{level}"
        if stage != top and step is not None and step.top_down is not None:
            above = f"m_{level_above(level)}"
            lines.append(_node(f"m_{level}", merge, "merge"))
            lines.append(f"  lat_{level} -> m_{level};")
            lines.append(
                f'  {above} -> m_{level} [label=" {up}\\n {shape_text(step.top_down)}", '
                'color="#2F6DB5", fontcolor="#2F6DB5", constraint=false];'
            )
            src = f"m_{level}"
            row.append(src)
        elif stage == top:
            lines.append(f'  m_{level} [label="", shape=point, width=0.06];')
            lines.append(f"  lat_{level} -> m_{level} [arrowhead=none];")
            src = f"m_{level}"
            row.append(src)
        if level in levels:
            lines.append(_node(f"conv_{level}", f"3×3 conv\\n{d} → {d}", "conv"))
            label = f"{level}\\n{shape_text(levels[level])}\\nstride {stride_of(level)}"
            lines += [f"  {src} -> conv_{level};", _node(level, label, "level"), f"  conv_{level} -> {level};"]
            row += [f"conv_{level}", level]
        lines.append(f"  {{rank=same; {'; '.join(row)};}}")
    inputs = {level_of(s) for s in config.stages}
    for name in (n for n in levels if n not in inputs):
        label = f"{name}\\n{shape_text(levels[name])}\\nstride {stride_of(name)}"
        lines.append(_node(name, label, "level"))
        lines.append(f'  {level_below(name)} -> {name} [label=" subsample ×2\\n (max_pool k=1, s=2)"];')
    lines.append("}")
    return "\n".join(lines)


def parameter_rows(model: Pyramid) -> list[dict[str, object]]:
    """Rows for a parameter table: per backbone stage, FPN laterals and 3x3s, then the two totals.

    The last two rows are the backbone total and the FPN total.
    """
    counts = count_parameters(model)
    backbone = {k: v for k, v in counts.items() if k.startswith("c")}
    lateral = sum(v for k, v in counts.items() if k.endswith(".lateral"))
    output = sum(v for k, v in counts.items() if k.endswith(".output"))
    rows: list[dict[str, object]] = [{"part": f"backbone {k}", "parameters": v} for k, v in backbone.items()]
    rows += [
        {"part": "FPN lateral 1×1 convs", "parameters": lateral},
        {"part": "FPN output 3×3 convs", "parameters": output},
        {"part": "backbone total", "parameters": sum(backbone.values())},
        {"part": "FPN total", "parameters": lateral + output},
    ]
    return rows


def join_names(names: Sequence[str]) -> str:
    """``"c3, c4 and c5"``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ------------------------------------------------------------------------------ timing


def _level_label(step: str) -> str:
    """``"p3.lateral"`` -> ``"p3"``; backbone stages stay as they are."""
    return level_of_step(step)


def timing_rows(report: cache.TimingReport) -> list[dict[str, object]]:
    """One table row per step: milliseconds, GFLOPs, GFLOP/s, output MB and device."""
    rows = []
    for name, ms in report.steps.items():
        gflops = report.flops.get(name, 0) / 1e9
        rows.append(
            {
                "step": name,
                "part": report.groups[name],
                "ms": round(ms, 3),
                "GFLOPs": round(gflops, 4),
                "GFLOP/s": round(gflops / (ms / 1e3), 1) if ms > 0 else None,
                "output MB": round(report.output_mb.get(name, 0.0), 3),
                "device": report.device,
            }
        )
    return rows


@st.fragment
def show_timing_panel(settings: S.Settings) -> None:
    """Measure and show the timing panel; its controls rerun only this fragment.

    Args:
        settings: the sidebar settings (the analysis comes from the caches, not from arguments,
            so the fragment keeps no tensors alive between reruns).
    """
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    repeats = int(
        left.number_input(
            "Timed runs (median; one warm-up run first, not counted)",
            min_value=1,
            max_value=50,
            value=S.DEFAULT_REPEATS,
            step=1,
            key=S.KEY_REPEATS,
        )
    )
    if right.button("Measure again", key=S.KEY_MEASURE, icon=":material/timer:", help="Rerun only the measurement."):
        st.session_state[S.TIMING_RUNS] = st.session_state.get(S.TIMING_RUNS, 0) + 1
    image = settings.image
    if image is None:
        return
    analysis = cache.analyse(settings.config, image.array, image.digest, settings.size)
    with st.spinner(f"Timing {repeats} runs after one warm-up run…"):
        report = cache.timing_report(
            analysis.key, repeats, st.session_state.get(S.TIMING_RUNS, 0), analysis, image.array
        )
    for notice in report.notices:
        st.warning(notice)
    total = report.backbone_ms + report.fpn_ms
    gflop = sum(report.flops.values()) / 1e9
    cols = st.columns(5)
    cols[0].metric("Backbone", f"{report.backbone_ms:.1f} ms", border=True)
    cols[1].metric("FPN", f"{report.fpn_ms:.1f} ms", border=True)
    cols[2].metric("FPN share of total", f"{report.fpn_ms / total:.1%}" if total > 0 else "–", border=True)
    cols[3].metric("GFLOP/s achieved", f"{gflop / (total / 1e3):.0f}" if total > 0 else "–", border=True)
    cols[4].metric("Device", report.device.upper(), border=True)
    if st.toggle(
        "Compare with the plain forward",
        key=S.KEY_COMPARE_PLAIN,
        help="Times the same ResNet-50 without BatchNorm folded into the convolutions and without "
        "channels_last memory layout: the two optimizations applied once at load.",
    ):
        with st.spinner("Timing the plain backbone…"):
            plain_ms = cache.time_plain_backbone(
                settings.config.weights, str(settings.config.device), image.array, settings.size, repeats
            )
        speedup = plain_ms / report.backbone_ms if report.backbone_ms > 0 else float("nan")
        st.metric(
            "Optimized backbone speedup",
            f"{speedup:.2f}×",
            delta=f"{plain_ms - report.backbone_ms:.1f} ms saved per image ({plain_ms:.1f} ms plain)",
            border=True,
        )

    per_level: dict[str, float] = {}
    groups: dict[str, str] = {}
    # Backbone stages first, then the FPN levels fine to coarse (the FPN runs coarse to fine).
    order = sorted(report.steps, key=lambda n: (report.groups[n] != "backbone", _level_label(n)))
    for name in order:
        ms = report.steps[name]
        label = _level_label(name)
        if report.groups[name] == "fpn":
            label = f"{label} (FPN)"
        per_level[label] = per_level.get(label, 0.0) + ms
        groups[label] = report.groups[name]
    left, right = st.columns([1, 1], gap="large")
    with left:
        title = f"Median ms per stage and per pyramid level ({report.repeats} runs, {report.device})"
        st.markdown(f"**{title}**")
        st.bar_chart(
            pd.DataFrame(
                {"step": list(per_level), "ms": list(per_level.values()), "part": [groups[k] for k in per_level]}
            ),
            x="step",
            y="ms",
            color="part",
            horizontal=True,
            height=34 * len(per_level) + 60,
        )
        st.caption(" · ".join(f"{label}: {ms:.1f} ms" for label, ms in per_level.items()))
        panels.download_button(
            panels.Download(
                bar_figure,
                (list(per_level), list(per_level.values())),
                {"title": title, "xlabel": "milliseconds", "groups": [groups[label] for label in per_level]},
                file_name="timing.png",
                key="download_timing",
            ),
            settings.export_scale,
        )
        st.caption(
            "An FPN level's bar sums its lateral 1×1, top-down upsample + merge and 3×3 steps; "
            "p6 is the subsampling of the top level."
        )
    with right:
        rows = timing_rows(report)
        st.dataframe(
            rows,
            hide_index=True,
            width="stretch",
            height=36 * (len(rows) + 1) + 4,  # every row visible, no inner scrolling
            column_config={
                "ms": st.column_config.NumberColumn("ms", format="%.2f"),
                "GFLOPs": st.column_config.NumberColumn("GFLOPs", format="%.3f"),
                "GFLOP/s": st.column_config.NumberColumn("GFLOP/s", format="%.1f"),
                "output MB": st.column_config.NumberColumn("output MB", format="%.2f"),
            },
        )
        st.caption(
            f"Input {settings.size} px long side, d = {settings.config.out_channels}. GFLOPs are counted by torch's "
            "FlopCounterMode for this input shape (one multiply-add = 2 FLOPs). The whole-pass medians above "
            "are measured around each pass, so they can differ slightly from the sum of the steps."
        )
