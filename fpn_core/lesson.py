"""The step-by-step lesson as data: each panel of a pyramid level, with its title and prose.

One level p_k is built in five steps, left to right: the backbone stage c_k, its lateral 1×1,
the top-down map from the level above, their merge, and the 3×3 conv that gives p_k. What a
panel says depends on whether its step exists here (an ablation can drop it, the top level
has nothing from above): :data:`PANELS` holds one row per (step, case). The dashboard's step
pages and the lecture deck's speaker notes read the same rows, so the text is written once.

Streamlit-free: this module only formats text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from .fpn import LevelSteps
from .levels import level_above, level_of, stage_of, stride_of
from .paper import ANCHOR_SIZES, TABLE1
from .pyramid import PyramidConfig

__all__ = [
    "CASES",
    "PANELS",
    "STEPS",
    "LessonPanel",
    "PanelText",
    "level_lesson",
    "p6_prose",
    "panel_case",
    "panel_text",
    "shape_line",
]

#: A level's steps, left to right; ``"stage"`` is the backbone's c_k, the others are
#: :class:`fpn_core.fpn.LevelSteps` fields.
STEPS: tuple[str, ...] = ("stage", "lateral", "top_down", "merged", "output")

#: Why a step shows what it shows: it ran (``present``); there is nothing above the top level
#: (``top``); the ablation dropped it (``ablated``). The merged map says which inputs it had
#: (``both``, ``lateral only``, ``top-down only``).
CASES: tuple[str, ...] = ("present", "top", "ablated", "both", "lateral only", "top-down only")


@dataclass(frozen=True)
class PanelText:
    """One row of the lesson table: what a step's panel says in one case.

    ``title``, ``missing`` and ``prose`` are ``str.format`` templates; their fields are
    ``level``, ``stage``, ``above``, ``c_in`` (c_k's channels), ``d`` (the FPN width),
    ``upsample``, ``merge``, ``op`` (``+`` or ``mean of``) and ``ar`` (Table 1's AR1k by ablation).

    Attributes:
        step: one of :data:`STEPS`.
        case: one of :data:`CASES`.
        tensor: the tensor the panel shows (``"c_k"`` or the ``LevelSteps`` field), or None
            when the step does not exist in this case.
        title: the panel's short title.
        prose: what the panel shows and why (markdown); a present tensor's shape line goes before it.
        missing: the short text in place of a missing map (line breaks included).
    """

    step: str
    case: str
    tensor: str | None
    title: str
    prose: str
    missing: str = ""


#: Every panel of a level, by step and case.
PANELS: tuple[PanelText, ...] = (
    PanelText(
        "stage",
        "present",
        "c_k",
        "{stage} (backbone)",
        "the last residual block of a ResNet-50 stage (after ReLU). Precise positions, weaker semantics at fine "
        "levels.",
    ),
    PanelText(
        "lateral",
        "present",
        "lateral",
        "lateral 1×1",
        "a 1×1 conv maps {c_in} channels to d = {d}, so the level can be added to the map from above "
        "(no non-linearity).",
    ),
    PanelText(
        "lateral",
        "ablated",
        None,
        "lateral 1×1",
        "**lateral** · none: with *no-lateral*, {stage} never enters; the level only receives the upsampled map "
        "from above, so fine detail is lost (paper: AR1k {ar[no-lateral]}).",
        "no lateral:\nthe ablation drops\nthe 1×1 connection",
    ),
    PanelText(
        "top_down",
        "present",
        "top_down",
        "top-down from {above} ↑2×",
        "the merged map of {above} (before its 3×3) upsampled 2× with {upsample} interpolation to this size: "
        "coarse, semantically strong features come down.",
    ),
    PanelText(
        "top_down",
        "top",
        None,
        "top-down input",
        "**top-down** · no top-down input: this is the top of the pyramid ({level}); nothing comes down from "
        "above, so the merged map is the lateral alone.",
        "no top-down input:\nthis is the top\nof the pyramid",
    ),
    PanelText(
        "top_down",
        "ablated",
        None,
        "top-down input",
        "**top-down** · no top-down input: the ablation removes the top-down path, so every level is a bottom-up "
        "feature on its own (paper: AR1k {ar[no-top-down]}).",
        "no top-down input:\nthe ablation removes\nthe top-down path",
    ),
    PanelText(
        "merged",
        "both",
        "merged",
        "merged ({merge})",
        "the input of the 3×3; here it is lateral {op} top-down: fine localisation from {stage} plus meaning from "
        "above.",
    ),
    PanelText(
        "merged",
        "lateral only",
        "merged",
        "merged ({merge})",
        "the input of the 3×3; here it equals the lateral (nothing to merge).",
    ),
    PanelText(
        "merged",
        "top-down only",
        "merged",
        "merged ({merge})",
        "the input of the 3×3; here it is the upsampled map alone (no lateral).",
    ),
    PanelText(
        "output",
        "present",
        "output",
        "{level} = 3×3 conv",
        'a 3×3 conv on the merged map; the paper says it "reduces the aliasing effect of upsampling" (nearest '
        "upsampling leaves 2×2 blocks).",
    ),
    PanelText(
        "output",
        "ablated",
        None,
        "{level} output",
        "**{level}** · none: *finest-only* keeps the top-down path but outputs only the finest level "
        "(paper, P2 only: AR1k {ar[finest-only]}).",
        "no output:\nonly the finest level\nis kept",
    ),
)

_BY_CASE: dict[tuple[str, str], PanelText] = {(row.step, row.case): row for row in PANELS}


def panel_text(step: str, case: str) -> PanelText:
    """The row of :data:`PANELS` for ``step`` in ``case`` (``KeyError`` for a pair it does not hold)."""
    return _BY_CASE[(step, case)]


def panel_case(step: str, steps: LevelSteps, *, top: bool) -> str:
    """Which case of :data:`CASES` applies to ``step`` of one level.

    Args:
        step: one of :data:`STEPS`.
        steps: the level's recorded steps.
        top: whether the level is the top of the pyramid (nothing comes down to it).
    """
    if step == "stage":
        return "present"
    if step == "merged":
        if steps.top_down is None:
            return "lateral only"
        return "top-down only" if steps.lateral is None else "both"
    if getattr(steps, step) is not None:
        return "present"
    return "top" if step == "top_down" and top else "ablated"


def shape_line(name: str, tensor: Tensor, stride: int) -> str:
    """``"**c4** · 1024 × 8 × 8 · stride 16 · 1024 channels"``: a tensor's name, shape and stride (markdown)."""
    c, h, w = (int(s) for s in tensor.shape[-3:])
    return f"**{name}** · {c} × {h} × {w} · stride {stride} · {c} channels"


@dataclass(frozen=True)
class LessonPanel:
    """One panel of a level, resolved for one analysis.

    Attributes:
        step: one of :data:`STEPS`.
        case: one of :data:`CASES`.
        title: the panel's title.
        tensor: the tensor it shows (1, C, H, W), or None when the step does not exist.
        missing: the text in place of a missing map ("" when the tensor exists).
        caption: markdown under the panel: the shape line and the prose.
    """

    step: str
    case: str
    title: str
    tensor: Tensor | None
    missing: str
    caption: str


def level_lesson(level: str, stage: Tensor, steps: LevelSteps, config: PyramidConfig) -> list[LessonPanel]:
    """The five panels of one level, left to right (:data:`STEPS`), texts filled in.

    Args:
        level: ``p2..p5``.
        stage: the backbone's c_k feeding it (1, C, H, W).
        steps: the level's recorded steps.
        config: the pyramid (its upsampling, merge, width and stages).
    """
    fields: Mapping[str, object] = {
        "level": level,
        "stage": stage_of(level),
        "above": level_above(level),
        "c_in": int(stage.shape[1]),
        "d": config.out_channels,
        "upsample": config.upsample,
        "merge": config.merge,
        "op": "+" if config.merge == "sum" else "mean of",
        "ar": {name: row.ar for name, row in TABLE1.items()},
    }
    top = level == level_of(config.stages[-1])
    stride = stride_of(level)
    out = []
    for step in STEPS:
        case = panel_case(step, steps, top=top)
        row = panel_text(step, case)
        tensor = stage if step == "stage" else getattr(steps, step)
        prose = row.prose.format_map(fields)
        if tensor is not None:
            name = {"stage": str(fields["stage"]), "output": level, "top_down": "top-down"}.get(step, step)
            prose = f"{shape_line(name, tensor, stride)}: {prose}"
        out.append(LessonPanel(step, case, row.title.format_map(fields), tensor, row.missing.format_map(fields), prose))
    return out


def p6_prose(extra: str, below: str, exact: bool) -> str:
    """Why the extra level (p6) is a stride-2 subsampling of the level below, and whether this image shows it."""
    return (
        f"**{extra}** is not computed by a convolution: it is a stride-2 **subsampling** of {below}, used only by "
        f"the region proposal network for the largest anchors ({ANCHOR_SIZES[-1]}²). torchvision writes it as "
        '`F.max_pool2d(x, kernel_size=1, stride=2)`; with a 1×1 window the "max" is over a single value, so it '
        "just keeps every second row and column. "
        + (
            f"Checked on this image: {extra} equals {below}[..., ::2, ::2] exactly."
            if exact
            else f"On this image {extra} is not exactly every second cell of {below}."
        )
    )
