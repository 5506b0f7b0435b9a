"""The table of steps and their costs, and the ``inspect`` report built on it.

One table serves the command line's ``inspect``, the Timing page and the home page: one row per
step that ran (backbone stages ``c1..c5``, then the FPN's ``p*.lateral``, ``p*.top_down``,
``p*.output`` and ``p*.pool`` in the order they ran), and named totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from .fpn import extra_steps
from .levels import level_of, level_of_step, step_key, step_of, stride_of
from .maps import map_stats
from .point import PointAnalysis, analyse_point
from .pyramid import DEFAULT_SIZE, Pyramid, PyramidOutput, count_flops, count_parameters

__all__ = [
    "PART_BACKBONE",
    "PART_FPN",
    "Cost",
    "StepRow",
    "StepTable",
    "inspect_report",
    "point_analysis",
    "step_table",
]

PART_BACKBONE, PART_FPN = "backbone", "fpn"
#: What the Timing page says its numbers are, and what a level's bar sums (the lecture deck's notes too).
TIMING_INTRO = (
    "How long each step takes on this machine, and how much work it is. Timings are the median of "
    "several runs after one untimed warm-up run; other sessions on the same server can slow them down."
)
LEVEL_BAR_TEXT = (
    "An FPN level's bar sums its lateral 1×1, top-down upsample + merge and 3×3 steps; "
    "p6 is the subsampling of the top level, or with P6/P7 (RetinaNet, FCOS) a 3×3 stride-2 conv, as is p7."
)
_STEP_WHAT = {
    "lateral": "1x1 lateral conv of {stage}",
    "top_down": "upsample {above} to this size ({upsample}), {merge}",
    "output": "3x3 conv (smooths the merged map)",
}


def runs_text(n: int) -> str:
    """``"1 run"``, ``"3 runs"``."""
    return "1 run" if n == 1 else f"{n} runs"


def timing_title(repeats: int, device: str) -> str:
    """The timing chart's title (the Timing page and the deck)."""
    return f"Median ms per stage and per pyramid level ({runs_text(repeats)}, {device})"


@dataclass(frozen=True)
class StepRow:
    """One step that ran, reduced to small numbers (no tensors kept).

    Attributes:
        key: the step's name in timings and counts: ``"c3"``, ``"p4.lateral"``, ``"p6.pool"``.
        level: the stage or level it belongs to (``"c3"``, ``"p4"``).
        step: ``"stage"`` for the backbone, else ``"lateral"``, ``"top_down"``, ``"output"``, ``"pool"``.
        part: ``"backbone"`` or ``"fpn"``.
        what: what the step does, in plain words.
        shape: the shape of the tensor it produces (top-down: the merged map).
        ms: median milliseconds.
        flops: floating-point operations (0 where not counted).
        params: parameters of the step's module (0 for parameter-free steps).
        output_mb: size of the tensor it produces, MB.
    """

    key: str
    level: str
    step: str
    part: str
    what: str
    shape: tuple[int, ...]
    ms: float
    flops: int
    params: int
    output_mb: float


@dataclass(frozen=True)
class Cost:
    """Milliseconds, floating-point operations and parameters of a part of the model."""

    ms: float
    flops: int
    params: int


@dataclass(frozen=True)
class StepTable:
    """The steps of one analysis and their costs.

    Attributes:
        rows: every step that ran, in the order it ran.
        backbone: the backbone's whole-pass median ms, its FLOPs, its parameters.
        fpn: the same for the FPN; its parameters count every conv the model holds, also those
            an ablation leaves unused (FLOPs and ms only count what ran).
        lateral_params: parameters of all the FPN's lateral 1x1 convs.
        output_params: parameters of all the FPN's 3x3 output convs.
        device: where it ran.
        repeats: timed runs per median.
        notices: anything the user should know (e.g. a CPU fallback).
    """

    rows: tuple[StepRow, ...]
    backbone: Cost
    fpn: Cost
    lateral_params: int
    output_params: int
    device: str
    repeats: int
    notices: tuple[str, ...]

    @property
    def total(self) -> Cost:
        """Backbone and FPN together (ms: the sum of the two whole-pass medians)."""
        b, f = self.backbone, self.fpn
        return Cost(b.ms + f.ms, b.flops + f.flops, b.params + f.params)

    def part(self, part: str) -> tuple[StepRow, ...]:
        """The rows of ``"backbone"`` or ``"fpn"``."""
        return tuple(r for r in self.rows if r.part == part)

    def level_cost(self, level: str) -> Cost:
        """A stage's cost, or a level's: the sum over its FPN steps that ran."""
        rows = [r for r in self.rows if r.level == level]
        return Cost(sum((r.ms for r in rows), 0.0), sum(r.flops for r in rows), sum(r.params for r in rows))

    def fpn_steps(self) -> dict[str, list[StepRow]]:
        """The FPN's rows per level, coarse to fine as the top-down path runs, p6 last."""
        steps: dict[str, list[StepRow]] = {}
        for row in self.part(PART_FPN):
            steps.setdefault(row.level, []).append(row)
        return steps


def _mb(tensor: Tensor) -> float:
    return float(tensor.numel() * tensor.element_size()) / 2**20


def _fpn_tensors(out: PyramidOutput, extra_block: nn.Module | None) -> dict[str, tuple[Tensor, str]]:
    """Each FPN step's tensor and what it does, by step key (``extra_block``: the FPN's, for p6/p7)."""
    config = out.config
    levels = [level_of(s) for s in config.stages]
    found: dict[str, tuple[Tensor, str]] = {}
    for i, level in enumerate(levels):
        recorded = out.steps.get(level)
        if recorded is None:
            continue
        words = {
            "stage": config.stages[i],
            "above": levels[i + 1] if i + 1 < len(levels) else "",
            "upsample": config.upsample,
            "merge": f"{config.merge} with the lateral",
        }
        if recorded.lateral is None:  # the no-lateral ablation: the top-down map passes alone
            words["merge"] = "no lateral to merge (ablation)"
        tensors = {"lateral": recorded.lateral, "top_down": recorded.merged, "output": recorded.output}
        for step, tensor in tensors.items():
            if tensor is not None and (step != "top_down" or recorded.top_down is not None):
                found[step_key(level, step)] = (tensor, _STEP_WHAT[step].format(**words))
    extras = extra_steps(extra_block, config.stages[-1])
    for level, tensor in out.levels.items():
        if level in extras:
            step, what, _ = extras[level]
            found[step_key(level, step)] = (tensor, what)
    return found


def step_table(model: Pyramid, out: PyramidOutput, flops: Mapping[str, int], params: Mapping[str, int]) -> StepTable:
    """The table of ``out``'s steps.

    Args:
        model: the pyramid that ran (its feature info names the stages' modules).
        out: its output (``run_pyramid`` or ``PyramidOutput.compose``).
        flops: ``count_flops`` on the same image and size; a step missing from it counts 0.
        params: ``count_parameters(model)``.
    """
    info = model.backbone.feature_info
    fpn_tensors = _fpn_tensors(out, model.fpn.extra_blocks)
    rows = []
    for key, ms in out.timings_ms.items():
        if key == "total":
            continue
        if key in out.stages:
            tensor, what, part, step = out.stages[key], f"ResNet-50 {info[key].module}", PART_BACKBONE, "stage"
        else:
            (tensor, what), part, step = fpn_tensors[key], PART_FPN, step_of(key)
        rows.append(
            StepRow(
                key=key,
                level=level_of_step(key),
                step=step,
                part=part,
                what=what,
                shape=tuple(int(s) for s in tensor.shape),
                ms=ms,
                flops=int(flops.get(key, 0)),
                params=int(params.get(key, 0)),
                output_mb=_mb(tensor),
            )
        )

    def part_flops(part: str) -> int:
        return sum(r.flops for r in rows if r.part == part)

    def params_of(suffix: str) -> int:
        return sum(n for k, n in params.items() if k.endswith(suffix))

    lateral, output = params_of(".lateral"), params_of(".output")
    return StepTable(
        rows=tuple(rows),
        backbone=Cost(
            out.backbone.total_ms, part_flops(PART_BACKBONE), sum(params.get(name, 0) for name in out.stages)
        ),
        fpn=Cost(out.fpn.total_ms, part_flops(PART_FPN), lateral + output),
        lateral_params=lateral,
        output_params=output,
        device=out.device,
        repeats=out.repeats,
        notices=tuple(out.notices),
    )


def point_analysis(model: Pyramid, image: np.ndarray, point: tuple[float, float], size: int) -> PointAnalysis:
    """ERF of every stage (c1..c5) and level, and the stage shares, at ``point``."""
    names = (*model.backbone.feature_info.names(), *model.level_info.names())
    return analyse_point(model, image, point, size=size, names=names)


def inspect_report(
    model: Pyramid,
    out: PyramidOutput,
    image: np.ndarray,
    *,
    path: str = "",
    size: int = DEFAULT_SIZE,
    warmup: int = 0,
    point: tuple[float, float] | None = None,
) -> dict:
    """Everything ``inspect`` shows, as plain JSON-ready data.

    Args:
        model: The pyramid that ran.
        out: Its output on the image (``run_pyramid``).
        image: The image as loaded (before resizing): FLOPs are counted and the point analysed on it.
        path: The image's path, for the record.
        size: The long side it was resized to.
        warmup: The untimed runs before the timed ones, for the record.
        point: ``(x, y)`` in pixels of the image as loaded (``--point``), or None.

    Returns:
        ``image``, ``device``, ``weights`` (``Provenance.as_dict()``), ``config``, ``run``
        (size, repeats, warm-up), ``stages`` and ``levels`` (one row each: name, shape,
        stride, channels, mean, std, ms, gflops, params; a level sums its FPN steps),
        ``steps`` (per level, coarse to fine), ``total_ms`` and ``notices``. With ``point``,
        every stage and level row also has ``theoretical_rf_px`` (int, network-input pixels)
        and ``erf_radius_px`` (``{"50": r, "90": r}``, pixels of the image as loaded), each
        level row ``stage_shares`` (stage -> share at the point, summing to 1), and the report
        a ``point`` entry (the point, its cells, ERF/RF ratios and one sentence per level).
    """
    table = step_table(model, out, count_flops(model, image, size=size), count_parameters(model))
    analysis = point_analysis(model, image, point, size) if point is not None else None

    def row(name: str, tensor: Tensor) -> dict:
        stats, cost = map_stats(tensor), table.level_cost(name)
        return {
            "name": name,
            "shape": list(tensor.shape),
            "stride": stride_of(name),
            "channels": int(tensor.shape[1]),
            "mean": stats["mean"],
            "std": stats["std"],
            "ms": cost.ms,
            "gflops": cost.flops / 1e9,
            "params": cost.params,
        }

    stages = [row(name, t) for name, t in out.stages.items()]
    levels = [row(name, t) for name, t in out.levels.items()]
    if analysis is not None:
        fields = analysis.fields()
        for r in [*stages, *levels]:
            r.update(fields.get(r["name"], {}))
    h, w = out.image.shape[:2]
    report = {
        "image": {"path": path, "loaded_hw": list(image.shape[:2]), "input_hw": [h, w]},
        "device": out.device,
        "weights": model.provenance.as_dict(),
        "config": model.config.as_dict(),
        "run": {"size": size, "repeats": out.repeats, "warmup": warmup},
        "stages": stages,
        "levels": levels,
        "steps": {level: [_step_fields(r) for r in rows] for level, rows in table.fpn_steps().items()},
        "total_ms": out.timings_ms["total"],
        "notices": list(out.notices),
    }
    if analysis is not None:
        report["point"] = analysis.summary()
    return report


def _step_fields(row: StepRow) -> dict:
    return {
        "step": row.step,
        "what": row.what,
        "shape": list(row.shape),
        "ms": row.ms,
        "gflops": row.flops / 1e9,
        "params": row.params,
    }
