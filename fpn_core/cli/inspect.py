"""The ``inspect`` command: shapes, statistics, time, FLOPs and parameters of every stage and level

Usage::

    python -m fpn_core inspect IMAGE [--width N] [--stages c3,c4,c5] [--upsample nearest|bilinear]
        [--merge sum|mean] [--no-p6] [--ablation full|no-top-down|no-lateral|finest-only]
        [--weights imagenet|coco-fpn|coco-retinanet|random|PATH] [--device auto|cuda|mps|cpu] [--size N]
        [--repeats N] [--seed N] [--no-download] [--point X,Y] [--json]

``--point X,Y`` (pixels of the image as loaded) adds, per stage and level, the theoretical
receptive field, the effective receptive field's radii and (on levels) each stage's share at
that point (``fpn_core.point``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from ..report import inspect_report, runs_text
from .common import WARMUP, Parents, analyse, provenance_lines, shape_text, table

__all__ = ["add_parser", "format_table", "run"]


def add_parser(subcommands: argparse._SubParsersAction, parents: Parents) -> argparse.ArgumentParser:
    """Register ``inspect``."""
    return subcommands.add_parser(
        "inspect",
        parents=[parents.pyramid, parents.run],
        help="shapes, statistics, time, FLOPs and parameters of every stage and level",
    )


def run(args: argparse.Namespace) -> int:
    """Build and run the pyramid, then print its report as a table or JSON."""
    done = analyse(args)
    report = inspect_report(
        done.model, done.out, done.image, path=str(args.image), size=done.size, warmup=WARMUP, point=done.point
    )
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def format_table(report: Mapping) -> str:
    """The human-readable ``inspect`` output: header, one row per map, the FPN steps, provenance.

    Args:
        report: From :func:`fpn_core.report.inspect_report`.

    Returns:
        The text, lines joined with newlines (no trailing newline).
    """
    cfg, weights, run = report["config"], report["weights"], report["run"]
    image = report["image"]
    lines = [f"FPN Explorer inspect: {image['path']}"]
    if image["loaded_hw"]:
        lh, lw = image["loaded_hw"]
        ih, iw = image["input_hw"]
        lines.append(f"image    {lw} × {lh} px, network input {iw} × {ih} px (long side {run['size']})")
    lines.append(f"device   {report['device']}")
    lines.append(
        f"config   width {cfg['out_channels']}, stages {','.join(cfg['stages'])}, upsample {cfg['upsample']}, "
        f"merge {cfg['merge']}, p6 {'on' if cfg['p6'] else 'off'}, ablation {cfg['ablation']}, seed {cfg['seed']}"
    )
    lines += provenance_lines(weights)
    lines.append("")

    headers = ["name", "shape", "stride", "channels", "mean", "std", "ms", "GFLOPs", "params"]
    rows = [
        [
            r["name"],
            shape_text(r["shape"]),
            str(r["stride"]),
            str(r["channels"]),
            f"{r['mean']:.4g}",
            f"{r['std']:.4g}",
            f"{r['ms']:.2f}",
            f"{r['gflops']:.3f}",
            f"{r['params']:,}",
        ]
        for r in [*report["stages"], *report["levels"]]
    ]
    lines += table(headers, rows, left=2)
    lines.append("")
    lines.append("FPN steps, in top-down order (a level's ms, GFLOPs and params above are the sums of its steps)")
    step_rows = [
        [
            level,
            s["step"],
            s["what"],
            shape_text(s["shape"]),
            f"{s['ms']:.2f}",
            f"{s['gflops']:.3f}",
            f"{s['params']:,}",
        ]
        for level, steps in report["steps"].items()
        for s in steps
    ]
    lines += table(["level", "step", "what", "shape", "ms", "GFLOPs", "params"], step_rows, left=4)
    lines.append("")
    if "point" in report:
        lines += _point_lines(report)
        lines.append("")
    lines.append(
        f"total    {report['total_ms']:.1f} ms (median of {runs_text(run['repeats'])} after {run['warmup']} warm-up; "
        "backbone and FPN passes, each timed as a whole)"
    )
    lines += [f"notice   {n}" for n in report["notices"]]
    return "\n".join(lines)


def _point_lines(report: Mapping) -> list[str]:
    """The receptive fields and stage shares at the picked point, one row per stage and level."""
    point = report["point"]
    x, y = point["xy"]
    ix, iy = point["input_xy"]
    what = "sum over channels" if point["channel"] is None else f"channel {point['channel']}"
    lines = [
        f"Receptive fields at point ({x:g}, {y:g}) (network input ({ix:g}, {iy:g})); ERF of the cell there, "
        f"{what}, |gradient| {point['magnitude']}",
        "RF: theoretical receptive field side (network-input px); ERF r50/r90: radius holding 50%/90% of the "
        "gradient mass (image px); ERF/RF: 2·r90 / RF (network-input px)",
    ]

    def radius(r: Mapping, q: str) -> str:
        value = r["erf_radius_px"][q]
        return "-" if value is None else f"{value:.1f}"

    rows = []
    for r in [*report["stages"], *report["levels"]]:
        if "theoretical_rf_px" not in r:
            continue
        ratio = point["erf_to_rf"].get(r["name"])
        shares = r.get("stage_shares")
        rows.append(
            [
                r["name"],
                ",".join(str(v) for v in point["cells"][r["name"]]),
                str(r["theoretical_rf_px"]),
                radius(r, "50"),
                radius(r, "90"),
                "-" if ratio is None else f"{ratio:.2f}",
                ", ".join(f"{s} {v:.0%}" for s, v in shares.items()) if shares else "",
            ]
        )
    lines += table(
        ["name", "cell (row,col)", "RF px", "ERF r50", "ERF r90", "ERF/RF", "stage shares at the point"], rows, left=2
    )
    lines += [f"         {sentence}" for sentence in point["sentences"].values()]
    return lines
