"""One picked point, both questions: where each stage and level looks (ERF), and where each level's signal comes from.

:func:`analyse_point` runs one forward pass with gradients for the ERF maps and reuses its
backbone stages for the exact stage contributions, so a page, the CLI, the export and the
benchmark all get the same figures from one call.

The contributions do not depend on the point (only the shares *at* the point do, and those are
a lookup), so a page that already holds the stages of ``run_pyramid`` can cache
``stage_contributions(model.fpn, out.stages, config)`` per image, size and configuration, call
only ``erf_maps`` on each click, and assemble ``PointAnalysis(erf, contributions)`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .contributions import Contributions, describe_shares, stage_contributions
from .levels import stride_of
from .pyramid import DEFAULT_SIZE, Pyramid
from .receptive import ErfResult, default_names, erf_at_point

__all__ = ["PointAnalysis", "analyse_point", "point_figures"]


@dataclass(frozen=True)
class PointAnalysis:
    """ERF and stage contributions at one point.

    Attributes:
        erf: the effective receptive fields (``erf.cells`` are the picked cells, ``erf.image`` the network input).
        contributions: every level split into its stages' contributions (whole maps).
        shares_at: level -> stage -> share at the picked cell (sums to 1).
    """

    erf: ErfResult
    contributions: Contributions

    def without_tensors(self) -> PointAnalysis:
        """A copy whose contributions keep no per-channel tensors (see ``Contributions.without_tensors``)."""
        return PointAnalysis(self.erf, self.contributions.without_tensors())

    @property
    def shares_at(self) -> dict[str, dict[str, float]]:
        return {
            level: self.contributions.shares_at(level, self.erf.cells[level])
            for level in self.contributions.levels
            if level in self.erf.cells
        }

    def sentence(self, level: str, *, whole_level: bool = False) -> str:
        """The plain-English reading of ``level``'s shares at the point (or over the whole level)."""
        if whole_level:
            return describe_shares(level, self.contributions.shares[level], where="over the whole level,")
        return describe_shares(level, self.shares_at[level])

    def summary(self) -> dict:
        """The point as plain JSON-ready data: where it is, its cells, ERF/RF ratios, one sentence per level."""
        erf = self.erf
        return {
            "xy": list(erf.point),
            "input_xy": [round(v, 2) for v in erf.input_point],
            "channel": erf.channel,
            "magnitude": erf.magnitude,
            "units": "theoretical_rf_px: network-input pixels; erf_radius_px: pixels of the image as loaded",
            "cells": {name: list(cell) for name, cell in erf.cells.items()},
            "erf_to_rf": {name: None if r is None else round(r, 3) for name, r in erf.ratio.items()},
            "sentences": {level: self.sentence(level) for level in self.contributions.levels},
        }

    def fields(self) -> dict[str, dict]:
        """Per stage and level, what ``inspect --json`` adds: ``theoretical_rf_px`` (network-input
        px), ``erf_radius_px`` (``{"50", "90"}``, image px, rounded to 0.1) and, on levels,
        ``stage_shares`` at the point."""
        out: dict[str, dict] = {}
        shares = self.shares_at
        for name in self.erf.names:
            radii = self.erf.radii_px[name]
            entry: dict[str, object] = {
                "theoretical_rf_px": int(self.erf.theoretical_rf_px[name]),
                "erf_radius_px": {q: None if r is None else round(r, 1) for q, r in radii.items()},
            }
            if name in shares:
                entry["stage_shares"] = dict(shares[name])
            out[name] = entry
        return out


def analyse_point(
    model: Pyramid,
    image: np.ndarray,
    point: Sequence[float],
    *,
    size: int = DEFAULT_SIZE,
    names: Sequence[str] | None = None,
    channel: int | None = None,
    magnitude: str = "abs",
    keep_tensors: bool = True,
) -> PointAnalysis:
    """ERF maps of every stage and level at ``point``, and the stage contributions of every level.

    Args:
        model: from ``build_pyramid``; used read-only.
        image: RGB uint8 ``(H, W, 3)``, as loaded.
        point: ``(x, y)`` in pixels of ``image``.
        size: the long side of the network input (64 to 1024).
        names: stages and levels for the ERF (default ``c2..c5`` and the model's levels; the
            levels are always added, since the shares at the point need their cells).
        channel: differentiate one channel instead of the sum over channels.
        magnitude: ``"abs"`` or ``"squared"`` aggregation of the gradient's colors.
        keep_tensors: keep the contributions' per-channel tensors (False for a page cache:
            shares, strengths and composites stay; see ``Contributions.without_tensors``).

    Returns:
        A :class:`PointAnalysis`.

    Raises:
        ValueError: a point outside the image, a bad name, channel or magnitude.
    """
    names = tuple(names) if names is not None else default_names(model)
    names = names + tuple(lv for lv in model.level_info.names() if lv not in names)
    erf, stages = erf_at_point(model, image, point, size=size, names=names, channel=channel, magnitude=magnitude)
    contributions = stage_contributions(model.fpn, stages, model.config, keep_tensors=keep_tensors)
    return PointAnalysis(erf, contributions)


def point_figures(analysis: PointAnalysis, *, alpha: float = 0.6, colormap: str = "inferno") -> dict[str, Figure]:
    """Every figure of one point, by bundle file name (the export writes them; a page can offer each).

    Files: ``receptive/erf_<name>.png`` (the ERF over the image with its theoretical square and
    the cell's stride-grid square), ``receptive/erf_radii.png`` (radius against stage/level),
    ``contributions/<level>.png`` (where each stage dominates) and ``contributions/shares.png``
    (each level's split, whole level and at the point).
    """
    from .figures import contribution_figure, erf_figure, erf_radius_figure, shares_figure

    erf, contributions = analysis.erf, analysis.contributions
    image = erf.image
    px, py = erf.input_point
    figures: dict[str, Figure] = {}
    for name in erf.names:
        box, (r, c), s = erf.boxes[name], erf.cells[name], stride_of(name)
        radii = erf.radii_px[name]
        rtext = "no gradient" if radii["90"] is None else f"ERF r50 {radii['50']:.0f}, r90 {radii['90']:.0f} px"
        figures[f"receptive/erf_{name}.png"] = erf_figure(
            image,
            erf.maps[name],
            title=f"{name} cell ({r}, {c}): {rtext}; theoretical RF {erf.theoretical_rf_px[name]} px",
            box=(box.x0, box.y0, box.x1, box.y1),
            cell_square=(c * s, r * s, (c + 1) * s, (r + 1) * s),
            center=(box.cx, box.cy),
            alpha=alpha,
            colormap=colormap,
        )
    figures["receptive/erf_radii.png"] = erf_radius_figure(
        erf.names,
        erf.radii_px,
        {n: erf.theoretical_rf_px[n] * (erf.scale[0] * erf.scale[1]) ** 0.5 for n in erf.names},
        title=f"ERF radius at ({erf.point[0]:g}, {erf.point[1]:g}) and theoretical RF (image px)",
    )
    shares = analysis.shares_at
    for level in contributions.levels:
        figures[f"contributions/{level}.png"] = contribution_figure(
            image,
            contributions.composite(level),
            title=f"{level}: where each stage dominates\n{analysis.sentence(level)}",
            stages=contributions.sources[level],
            point=(px, py),
        )
    rows = {}
    for level in contributions.levels:
        rows[f"{level} whole"] = contributions.shares[level]
        if level in shares:
            rows[f"{level} at point"] = shares[level]
    figures["contributions/shares.png"] = shares_figure(rows, title="Stage shares per level (L1 of contributions)")
    return figures
