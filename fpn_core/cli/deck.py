"""The ``deck`` command: the whole lesson of one image as a 16:9 PowerPoint deck with speaker notes

Usage::

    python -m fpn_core deck IMAGE --out lecture.pptx [the options of inspect] [--cmap NAME] [--alpha A]
        [--reduction mean|max|l2|std|pc1] [--scope per-level|shared]
        [--detector faster-rcnn|retinanet|none] [--score 0.5] [--point X,Y]

``--point`` is the point of the receptive-field slides (default: the image's centre, where the
Receptive fields page starts). The detector reads its own weights (COCO, else an untrained
detector, with ``warning:`` lines); the deck is written to a temporary file and moved into place
(``fpn_core.deck.write_deck``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..deck import build_deck, deck_slide_count, run_lesson, write_deck
from ..detection import DETECTOR_NAMES, build_detector, detect, detector_spec
from ..point import analyse_point
from ..weights import operator_file_from_env
from .common import Parents, add_map_style_options, analyse, map_style, number, warn_weights

__all__ = ["NO_DETECTOR", "add_parser", "run"]

#: ``--detector`` value that leaves the detection slide without a detector.
NO_DETECTOR = "none"


def add_parser(subcommands: argparse._SubParsersAction, parents: Parents) -> argparse.ArgumentParser:
    """Register ``deck``: the pyramid options, the export's map options, the detector and where to write."""
    parser = subcommands.add_parser(
        "deck",
        parents=[parents.pyramid, parents.run],
        help="write the whole lesson as a 16:9 PowerPoint deck with speaker notes",
    )
    parser.add_argument("--out", required=True, type=Path, help="the .pptx file to write (its folder is created)")
    add_map_style_options(parser)
    # Checked by run(), so a bad name is one "error:" line like every other bad value.
    parser.add_argument(
        "--detector", default="faster-rcnn", help=f"one of {', '.join(DETECTOR_NAMES)}, or {NO_DETECTOR}"
    )
    parser.add_argument("--score", default=0.5, help="keep detections scoring at least this, 0 to 1")
    return parser


def run(args: argparse.Namespace) -> int:
    """Cheap checks first, then the analysis, the detector, the point, and the deck written atomically."""
    style = map_style(args, 1.0)
    if args.out.suffix.lower() != ".pptx":
        raise ValueError(f"--out must name a .pptx file, got {str(args.out)!r}")
    score = number("--score", args.score, float, low=0, high=1)
    spec = None if args.detector == NO_DETECTOR else detector_spec(args.detector)
    done = analyse(args)
    h, w = done.image.shape[:2]
    point = done.point or (w // 2, h // 2)  # the Receptive fields page starts at the centre too
    dets = None
    if spec is not None:
        det = build_detector(
            spec.name,
            device=done.model.device,
            seed=done.model.config.seed,
            allow_download=False if args.no_download else None,
            operator_file=operator_file_from_env(spec.env),
        )
        warn_weights(det.provenance)
        dets = detect(det, done.image, score, size=done.size)
    at = analyse_point(done.model, done.image, point, size=done.size)
    runs = run_lesson(done.model, done.out, done.image, size=done.size, detections=dets, point=at)
    data = build_deck(done.model, done.out, runs, style=style, source=Path(args.image).name)
    try:
        written = write_deck(data, args.out)
    except OSError as exc:
        raise OSError(f"cannot write the deck to {args.out}: {exc.strerror or exc}") from None
    slides = deck_slide_count(data)
    if args.json:
        print(json.dumps({"out": str(written), "slides": slides, "bytes": len(data)}))
    else:
        print(f"wrote {written} ({slides} slides, {len(data) / 2**20:.1f} MB)")
    return 0
