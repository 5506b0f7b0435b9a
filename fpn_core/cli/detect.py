"""The ``detect`` command: detections traced to their pyramid levels

Usage::

    python -m fpn_core detect IMAGE [--detector NAME] [--score 0.5]
        [--weights coco|random|PATH] [--classes FILE] [--size N] [--device auto|cuda|mps|cpu] [--seed N]
        [--no-download] [--json]

``NAME`` is one of the eight detectors (``fpn_core.detection.DETECTOR_NAMES``); with
``--weights PATH`` and no ``--detector`` the kind, classes and layout are read from the file.
It prints one row per detection (class, score, box, size, level, and a Mask R-CNN's mask area),
then how many detections, proposals and anchors each level has. ``--json`` adds each mask's area
and box, and each Keypoint R-CNN detection's keypoints as ``[x, y, visibility]`` lists. Missing
weights fall back to an untrained detector, with ``warning:`` lines saying why.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from ..checkpoints import read_class_names
from ..detection import (
    DEFAULT_DETECTOR,
    DETECTOR_NAMES,
    DETECTORS,
    MAX_INPUT_SIZE,
    MIN_INPUT_SIZE,
    Detections,
    build_detector,
    detect,
    detector_spec,
    how_to_get_weights,
)
from ..device import resolve_device
from ..images import load_image
from ..levels import level_name, stride_of
from ..paper import LEVEL_RULE
from ..weights import operator_file_from_env
from .common import (
    Parents,
    add_size_option,
    add_weights_option,
    framework_file,
    number,
    provenance_lines,
    table,
    warn,
    warn_weights,
)

__all__ = ["add_parser", "detect_report", "format_detections", "run"]


def add_parser(subcommands: argparse._SubParsersAction, parents: Parents) -> argparse.ArgumentParser:
    """Register ``detect``: the shared run options, the detector, its score threshold, weights and size."""
    parser = subcommands.add_parser(
        "detect",
        parents=[parents.run],
        help="detect objects with one of torchvision's eight detectors and name the level that found each",
    )
    # Checked by run(), not by argparse, so a bad value is one "error:" line on stderr.
    parser.add_argument(
        "--detector",
        default=None,
        help=f"one of {', '.join(DETECTOR_NAMES)} (default: the kind of the --weights file, else faster-rcnn)",
    )
    parser.add_argument(
        "--classes", default=None, help="a text file of class names, one per line, for labels 1, 2, … (over the file's)"
    )
    parser.add_argument("--score", default="0.5", help="keep detections scoring at least this, 0 to 1")
    add_weights_option(
        parser,
        default="coco",
        help="coco (the operator's file, the torch hub cache, else a download), random, or a checkpoint file",
    )
    add_size_option(
        parser,
        default=None,
        help=f"long side of the network input, {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} px (default: shorter side 800)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Cheap checks first, then build the detector, run it and print the detections."""
    spec = detector_spec(args.detector) if args.detector is not None else None
    score = number("--score", args.score, float, low=0, high=1)
    size = (
        None
        if args.size is None
        else number("--size", args.size, int, low=MIN_INPUT_SIZE, high=MAX_INPUT_SIZE, unit=" pixels")
    )
    seed = number("--seed", args.seed, int)
    device, notice = resolve_device(args.device)
    image = load_image(args.image)
    if framework_file(args.weights):
        raise ValueError(
            f"--weights {args.weights} is an mmdetection or detectron2 checkpoint: detect runs torchvision's heads, "
            "and theirs differ (RoIAlign aligned=True with sampling ratio 0, the background class last, "
            "class-specific box regression without a background row, anchor offsets), so they are not run. "
            "inspect and export show its ResNet-50 + FPN."
        )
    names = read_class_names(args.classes) if args.classes is not None else None
    env_spec = spec or detector_spec(DEFAULT_DETECTOR)
    det = build_detector(
        spec.name if spec else None,
        weights=args.weights,
        device=device,
        seed=seed,
        allow_download=False if args.no_download else None,
        operator_file=operator_file_from_env(env_spec.env),
        class_names=names,
    )
    warn_weights(det.provenance)
    if notice:
        warn(notice)
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
        lines += provenance_lines(report["weights"])
        if not report["weights"]["pretrained"]:
            lines.append(f"         {how_to_get_weights(spec.name)} Until then its boxes are noise.")
    lines += ["", f"{len(rows)} detections with score ≥ {report['score_threshold']:.2f}"]
    if rows:
        detections = [
            [
                r["class"],
                f"{r['score']:.3f}",
                ", ".join(f"{v:.1f}" for v in r["box"]),
                f"{r['size']:.0f}",
                f"{r['input_size']:.0f}",
                r["level"],
                level_name(r["paper_k"]),
                *([str(r["mask"]["area"])] if "mask" in r else []),
            ]
            for r in rows
        ]
        headers = ["class", "score", "box x1, y1, x2, y2 (px)", "size √(wh)", "at input", "level", "paper k"]
        if "mask" in rows[0]:
            headers.append("mask px")
        lines += table(headers, detections)
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
    lines += table(["level", "stride", "detections", "RPN proposals", "anchors"], level_rows)
    if spec.family.proposals:  # a two-stage detector: RoIAlign pooled each proposal from one level
        pooled = spec.pooled_levels
        lines.append(
            f"level = where RoIAlign pooled the box's proposal: {LEVEL_RULE} on the proposal in "
            f"network input pixels, clamped to {pooled[0]}..{pooled[-1]}; paper k: the same rule on the final "
            "box's size at input"
        )
    else:
        lines.append(f"level = {spec.level_source}; paper k: the FPN rule on its size at input")
    return "\n".join(lines)
