"""The ``detect`` command of ``python -m fpn_core``: detections traced to their pyramid levels.

Usage::

    python -m fpn_core detect IMAGE [--detector faster-rcnn|retinanet] [--score 0.5]
        [--weights coco|random|PATH] [--size N] [--device auto|cuda|mps|cpu] [--seed N]
        [--no-download] [--json]

It prints one row per detection (class, score, box, size and level), then how many detections,
proposals and anchors each level has. Like the other commands, bad input exits with status 2
and one ``error:`` line on stderr; missing weights fall back to an untrained detector, with
``warning:`` lines saying why.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from ..device import resolve_device
from ..images import load_image
from ..levels import level_name, stride_of
from ..paper import LEVEL_RULE
from ..weights import operator_file_from_env
from .build import build_detector
from .results import Detections
from .run import detect
from .specs import DETECTOR_NAMES, DETECTORS, detector_spec, how_to_get_weights

__all__ = ["add_detect_command", "detect_report", "format_detections"]

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def add_detect_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``detect`` on the ``python -m fpn_core`` sub-command parser."""
    parser = commands.add_parser(
        "detect", help="detect objects with Faster R-CNN or RetinaNet and name the level that found each"
    )
    parser.add_argument("image", help="image file (JPEG, PNG, WebP, BMP or TIFF)")
    # Checked by the handler, not by argparse, so a bad value is one "error:" line on stderr.
    parser.add_argument("--detector", default="faster-rcnn", help=f"one of {', '.join(DETECTOR_NAMES)}")
    parser.add_argument("--score", default="0.5", help="keep detections scoring at least this, 0 to 1")
    parser.add_argument(
        "--weights",
        default="coco",
        help="coco (the operator's file, the torch hub cache, else a download), random, or a checkpoint file",
    )
    parser.add_argument("--size", default=None, help="long side of the network input (default: shorter side 800)")
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default=None, help="where to run (default: FPN_DEVICE, else auto)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init used without weights")
    parser.add_argument("--no-download", action="store_true", help="never download weights")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run_detect)
    return parser


def _number(option: str, text: str, kind: type) -> float:
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be a number, got {text!r}") from None


def run_detect(args: argparse.Namespace) -> int:
    """Handle ``detect``: cheap checks first, then build the detector and run it."""
    from ..cli import _warn, _warn_weights  # cli imports this module; import back lazily

    spec = detector_spec(args.detector)
    score = _number("--score", args.score, float)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"--score must be from 0 to 1, got {args.score}")
    size = None if args.size is None else int(_number("--size", args.size, int))
    device, notice = resolve_device(args.device)
    image = load_image(args.image)
    det = build_detector(
        spec.name,
        weights=args.weights,
        device=device,
        seed=args.seed,
        allow_download=False if args.no_download else None,
        operator_file=operator_file_from_env(spec.env),
    )
    _warn_weights(det)
    if notice:
        _warn(notice)
    dets = detect(det, image, score, size=size)
    report = detect_report(dets, image=str(args.image), device=str(device))
    print(json.dumps(report, indent=2) if args.json else format_detections(report))
    return 0


def detect_report(dets: Detections, *, image: str = "", device: str = "") -> dict:
    """Everything ``detect`` shows, as JSON-ready data (``Detections.as_dict`` plus the run)."""
    return {"image": image, "device": device, **dets.as_dict()}


def format_detections(report: Mapping) -> str:
    """The human-readable ``detect`` output: header, one row per detection, then per level.

    Args:
        report: From :func:`detect_report`.
    """
    from ..cli import _provenance_lines, _table

    spec = DETECTORS[report["detector"]]
    ih, iw = report["image_hw"]
    nh, nw = report["input_hw"]
    rows = report["detections"]
    lines = [
        f"FPN Explorer detect: {report['image']}",
        f"detector {spec.title} (torchvision's model on fpn_core's ResNet-50 + FPN, {', '.join(spec.levels)})",
        f"image    {iw} × {ih} px, network input {nw} × {nh} px",
        f"device   {report['device']}",
    ]
    if report["weights"]:
        lines += _provenance_lines(report["weights"])
        if not report["weights"]["pretrained"]:
            lines.append(f"         {how_to_get_weights(spec.name)} Until then its boxes are noise.")
    lines += ["", f"{len(rows)} detections with score ≥ {report['score_threshold']:.2f}"]
    if rows:
        table = [
            [
                r["class"],
                f"{r['score']:.3f}",
                ", ".join(f"{v:.1f}" for v in r["box"]),
                f"{r['size']:.0f}",
                f"{r['input_size']:.0f}",
                r["level"],
                level_name(r["paper_k"]),
            ]
            for r in rows
        ]
        headers = ["class", "score", "box x1, y1, x2, y2 (px)", "size √(wh)", "at input", "level", "paper k"]
        lines += _table(headers, table)
    lines += ["", "per level"]
    level_rows = []
    for level, count in report["per_level"].items():
        anchors = report["anchors"][level]
        sizes = "/".join(f"{s:g}" for s in anchors["sizes"])
        ratios = "/".join(f"{r:g}" for r in anchors["aspect_ratios"])
        proposals = report["proposals_per_level"].get(level)
        level_rows.append(
            [
                level,
                str(stride_of(level)),
                str(count),
                "-" if proposals is None else str(proposals),
                f"{sizes} px × ratios {ratios}",
            ]
        )
    lines += _table(["level", "stride", "detections", "RPN proposals", "anchors"], level_rows)
    if spec.family.proposals:
        lines.append(
            f"level = where RoIAlign pooled the box's proposal: {LEVEL_RULE} on the proposal in "
            "network input pixels, clamped to p2..p5; paper k: the same rule on the final box's size at input"
        )
    else:
        lines.append(
            "level = the level of the anchor that produced the box; paper k: the FPN rule on its size at input"
        )
    return "\n".join(lines)
