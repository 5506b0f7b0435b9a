"""Command line: inspect a pyramid on one image, export its maps, overlays and metadata, or a lecture deck.

Usage::

    python -m fpn_core inspect IMAGE [--width N] [--stages c3,c4,c5] [--upsample nearest|bilinear]
        [--merge sum|mean] [--no-p6] [--ablation full|no-top-down|no-lateral|finest-only]
        [--weights imagenet|coco-fpn|coco-retinanet|random|PATH] [--device auto|cuda|mps|cpu] [--size N]
        [--repeats N] [--seed N] [--no-download] [--point X,Y] [--json]
    python -m fpn_core export IMAGE --out DIR [same options] [--scale 1|2|3] [--zip]
        [--cmap NAME] [--alpha A] [--reduction mean|max|l2|std|pc1] [--scope per-level|shared] [--no-timings]
    python -m fpn_core deck IMAGE --out lecture.pptx [same options] [--cmap NAME] [--alpha A]
        [--reduction mean|max|l2|std|pc1] [--scope per-level|shared] [--detector faster-rcnn|retinanet|none]
        [--score 0.5] [--point X,Y]   (the whole lesson as a PowerPoint deck, see fpn_core.deck)
    python -m fpn_core detect IMAGE [--detector faster-rcnn|retinanet] [--score 0.5]
        [--weights coco|random|PATH] [--size N] [--device ...] [--seed N] [--no-download] [--json]
        (see fpn_core.detection.cli)

``--point X,Y`` (pixels of the image as loaded) adds, per stage and level, the theoretical
receptive field, the effective receptive field's radii and (on levels) each stage's share at
that point (``fpn_core.point``); ``export --point`` adds the ERF and contribution maps.

Bad input (an unreadable image, an option value the engine refuses) exits with status 2
and one line on stderr, ``error: <message>``. Weights that cannot be found are not an
error: the engine falls back (see ``fpn_core.weights``), the fallbacks are printed as
``warning:`` lines on stderr and recorded in the report's provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .deck import DeckStyle, build_deck, deck_slide_count, run_lesson, write_deck
from .detection import DETECTOR_NAMES, build_detector, detect, detector_spec
from .detection.cli import add_detect_command
from .device import resolve_device
from .export import EXPORT_SCALES, build_export, check_export_settings, write_export, zip_export
from .fpn import ABLATIONS, MERGE_MODES, UPSAMPLE_MODES
from .images import ImageError, load_image
from .levels import DEFAULT_STAGES
from .maps import CHANNEL_AGGREGATIONS, COLORMAPS, SCOPES
from .point import analyse_point
from .pyramid import (
    DEFAULT_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    Pyramid,
    PyramidConfig,
    PyramidOutput,
    build_pyramid,
    run_pyramid,
)
from .receptive import map_point
from .report import inspect_report, point_analysis
from .weights import WEIGHT_CHOICES, WEIGHTS_ENV, WeightsError, operator_file_from_env

__all__ = ["EXIT_BAD_INPUT", "ZIP_NAME", "build_parser", "format_table", "main"]

EXIT_BAD_INPUT = 2
ZIP_NAME = "fpn_export.zip"
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
WARMUP = 1
#: PyramidConfig's field names, as the options that set them.
_OPTION_OF = {"out_channels": "--width", "stages": "--stages"}


# --------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m fpn_core`` parser with its ``inspect`` and ``export`` commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("image", help="image file (JPEG, PNG, WebP, BMP or TIFF)")
    common.add_argument(
        "--width", dest="out_channels", type=int, default=256, help="FPN width d, a multiple of 8 from 16 to 512"
    )
    common.add_argument(
        "--stages", default=",".join(DEFAULT_STAGES), help="contiguous backbone stages, e.g. c2,c3,c4,c5"
    )
    common.add_argument("--upsample", choices=UPSAMPLE_MODES, default="nearest", help="top-down upsampling")
    common.add_argument("--merge", choices=MERGE_MODES, default="sum", help="how lateral and top-down combine")
    common.add_argument("--no-p6", action="store_true", help="leave out the stride-2 subsampled top level")
    common.add_argument("--ablation", choices=tuple(ABLATIONS), default="full", help="the paper's Table 1 variants")
    common.add_argument(
        "--weights",
        default="imagenet",
        help=f"{', '.join(WEIGHT_CHOICES)}, or a local weights file ({WEIGHTS_ENV} also names one)",
    )
    common.add_argument(
        "--device", choices=DEVICE_CHOICES, default=None, help="where to run (default: FPN_DEVICE, else auto)"
    )
    common.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help=f"long side of the network input, {MIN_SIZE} to {MAX_SIZE} px"
    )
    common.add_argument("--repeats", type=int, default=3, help=f"timed runs (median), after {WARMUP} warm-up")
    common.add_argument("--seed", type=int, default=0, help="seed of every random init")
    common.add_argument("--no-download", action="store_true", help="never download weights")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument(
        "--point",
        metavar="X,Y",
        default=None,
        help="a point in image pixels: add receptive fields (theoretical and effective) and stage shares there",
    )

    parser = argparse.ArgumentParser(prog="python -m fpn_core", description="FPN Explorer from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inspect = commands.add_parser(
        "inspect", parents=[common], help="shapes, statistics, time, FLOPs and parameters of every stage and level"
    )
    inspect.set_defaults(handler=_run_inspect)
    export = commands.add_parser("export", parents=[common], help="write maps, overlays, a slide and metadata")
    export.add_argument("--out", required=True, type=Path, help="folder to write into (created if needed)")
    export.add_argument("--scale", type=int, choices=EXPORT_SCALES, default=1, help="PNG resolution multiplier")
    export.add_argument("--zip", action="store_true", help=f"write one {ZIP_NAME} into --out instead of files")
    export.add_argument("--cmap", dest="colormap", default="jet", help=f"colormap, e.g. {', '.join(COLORMAPS)}")
    export.add_argument("--alpha", type=float, default=0.5, help="color weight of overlays, 0 to 1")
    export.add_argument(
        "--reduction",
        dest="aggregation",
        choices=CHANNEL_AGGREGATIONS,
        default="mean",
        help="channel aggregation: how the channels become one map",
    )
    export.add_argument("--scope", choices=SCOPES, default="per-level", help="color range per map or shared")
    export.add_argument(
        "--no-timings", action="store_true", help="leave timings out of metadata.json (byte-identical bundles)"
    )
    export.set_defaults(handler=_run_export)
    deck = commands.add_parser(
        "deck", parents=[common], help="write the whole lesson as a 16:9 PowerPoint deck with speaker notes"
    )
    deck.add_argument("--out", required=True, type=Path, help="the .pptx file to write (its folder is created)")
    deck.add_argument("--cmap", dest="colormap", default="jet", help=f"colormap, e.g. {', '.join(COLORMAPS)}")
    deck.add_argument("--alpha", type=float, default=0.5, help="color weight of overlays, 0 to 1")
    deck.add_argument(
        "--reduction", dest="aggregation", choices=CHANNEL_AGGREGATIONS, default="mean", help="channel aggregation"
    )
    deck.add_argument("--scope", choices=SCOPES, default="per-level", help="color range per map or shared")
    # Checked by the handler, so a bad name is one "error:" line like every other bad value.
    deck.add_argument("--detector", default="faster-rcnn", help=f"one of {', '.join(DETECTOR_NAMES)}, or none")
    deck.add_argument("--score", type=float, default=0.5, help="keep detections scoring at least this, 0 to 1")
    deck.set_defaults(handler=_run_deck)
    add_detect_command(commands)  # fpn_core.detection.cli: detections traced to their levels
    return parser


def _config_from_args(args: argparse.Namespace) -> tuple[PyramidConfig, list[str]]:
    """The configuration the options describe, and notices about the device.

    Raises:
        ValueError: an option value the engine refuses, naming it.
    """
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise ValueError(f"--size must be from {MIN_SIZE} to {MAX_SIZE} pixels, got {args.size}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    device, notice = resolve_device(args.device)
    try:
        config = PyramidConfig(
            out_channels=args.out_channels,
            stages=tuple(s.strip() for s in args.stages.split(",") if s.strip()),
            upsample=args.upsample,
            merge=args.merge,
            p6=not args.no_p6,
            ablation=args.ablation,
            weights=args.weights,
            device=str(device),
            seed=args.seed,
        )
    except ValueError as exc:
        # The engine names its own fields; say which option that is.
        option = next((opt for field, opt in _OPTION_OF.items() if str(exc).startswith(field)), None)
        raise ValueError(f"{option}: {exc}" if option else str(exc)) from None
    return config, [notice] if notice else []


def _analyse(args: argparse.Namespace) -> tuple[Pyramid, PyramidOutput, np.ndarray]:
    """Validate the options, load the image, build the model and run it (cheap checks first).

    Returns:
        The model, its output, and the image as loaded (before resizing).
    """
    config, notices = _config_from_args(args)
    point = _point_from_args(args)
    image = load_image(args.image)
    if point is not None:
        map_point(point, image.shape[:2], image.shape[:2])  # inside the image, before the model is built
    model = build_pyramid(
        config, allow_download=False if args.no_download else None, operator_file=operator_file_from_env()
    )
    _warn_weights(model)
    out = run_pyramid(model, image, size=args.size, repeats=args.repeats, warmup=WARMUP)
    for notice in [*notices, *out.notices]:
        _warn(notice)
    return model, out, image


def _warn(message: str) -> None:
    print(f"warning: {_one_line(message, limit=200)}", file=sys.stderr)


def _warn_weights(model: Pyramid) -> None:
    """One short stderr line per weights fallback, then what was used instead."""
    provenance = model.provenance
    for reason in provenance.fallbacks:
        _warn(f"weights fallback: {reason.split('. ')[0]}")
    if provenance.fell_back:
        _warn(f"{provenance.requested!r} weights unavailable, using {provenance.backbone}")


def _one_line(message: object, limit: int = 400) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _point_from_args(args: argparse.Namespace) -> tuple[float, float] | None:
    """``--point X,Y`` as two finite numbers, or None when not given.

    Raises:
        ValueError: naming the option and the bad value.
    """
    text = getattr(args, "point", None)
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        x = y = float("nan")
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"--point must be X,Y in pixels of the image (e.g. 250,150), got {text!r}")
    return x, y


# --------------------------------------------------------------------------- inspect


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            str(c).ljust(wd) if i < left else str(c).rjust(wd)
            for i, (c, wd) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return [line(headers), line(["-" * wd for wd in widths]), *(line(r) for r in rows)]


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(s) for s in shape)


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
    lines += _provenance_lines(weights)
    lines.append("")

    headers = ["name", "shape", "stride", "channels", "mean", "std", "ms", "GFLOPs", "params"]
    rows = [
        [
            r["name"],
            _shape(r["shape"]),
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
    lines += _table(headers, rows, left=2)
    lines.append("")
    lines.append("FPN steps, in top-down order (a level's ms, GFLOPs and params above are the sums of its steps)")
    step_rows = [
        [level, s["step"], s["what"], _shape(s["shape"]), f"{s['ms']:.2f}", f"{s['gflops']:.3f}", f"{s['params']:,}"]
        for level, steps in report["steps"].items()
        for s in steps
    ]
    lines += _table(["level", "step", "what", "shape", "ms", "GFLOPs", "params"], step_rows, left=4)
    lines.append("")
    if "point" in report:
        lines += _point_lines(report)
        lines.append("")
    lines.append(
        f"total    {report['total_ms']:.1f} ms (median of {run['repeats']} runs after {run['warmup']} warm-up; "
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
    lines += _table(
        ["name", "cell (row,col)", "RF px", "ERF r50", "ERF r90", "ERF/RF", "stage shares at the point"], rows, left=2
    )
    lines += [f"         {sentence}" for sentence in point["sentences"].values()]
    return lines


def _provenance_lines(weights: Mapping) -> list[str]:
    backbone = "trained" if weights["pretrained"] else "untrained"
    fpn = "trained" if weights["fpn_pretrained"] else "untrained"
    lines = [
        f"weights  asked for {weights['requested']!r}; backbone {weights['backbone']} "
        f"({backbone}, from {weights['source']}{', ' + weights['path'] if weights['path'] else ''})",
        f"         FPN {weights['fpn']} ({fpn})",
    ]
    fallbacks = weights["fallbacks"]
    if fallbacks:
        lines.append(f"         fell back {len(fallbacks)} time(s), because:")
        lines += [f"         {i}. {_one_line(reason)}" for i, reason in enumerate(fallbacks, 1)]
    else:
        lines.append("         no fallback: got what was asked for")
    return lines


def _run_inspect(args: argparse.Namespace) -> int:
    model, out, image = _analyse(args)
    report = inspect_report(
        model, out, image, path=str(args.image), size=args.size, warmup=WARMUP, point=_point_from_args(args)
    )
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


# --------------------------------------------------------------------------- export


def _run_export(args: argparse.Namespace) -> int:
    settings = {
        "colormap": args.colormap,
        "alpha": args.alpha,
        "aggregation": args.aggregation,
        "scope": args.scope,
        "scale": float(args.scale),
    }
    check_export_settings(**settings)
    model, out, image = _analyse(args)
    point = _point_from_args(args)
    extra = {"point": point_analysis(model, image, point, args.size)} if point is not None else {}
    files = build_export(out, **settings, timings=not args.no_timings, source=Path(args.image).name, **extra)
    try:
        if args.zip:
            args.out.mkdir(parents=True, exist_ok=True)
            target = args.out / ZIP_NAME
            target.write_bytes(zip_export(files))
            written = [target]
        else:
            written = write_export(files, args.out)
    except OSError as exc:
        raise OSError(f"cannot write the export to {args.out}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps({"out": str(args.out), "written": [str(p) for p in written], "files": sorted(files)}))
    else:
        where = written[0] if args.zip else args.out
        print(f"wrote {len(files)} files to {where}")
        for name in files:
            print(f"  {name}")
    return 0


# --------------------------------------------------------------------------- deck


def _run_deck(args: argparse.Namespace) -> int:
    """``deck``: cheap checks first, then the analysis, the detector, the point, and the deck written atomically."""
    style = DeckStyle(args.colormap, args.alpha, args.aggregation, args.scope)
    check_export_settings(
        colormap=style.colormap, alpha=style.alpha, aggregation=style.aggregation, scope=style.scope, scale=1.0
    )
    if args.out.suffix.lower() != ".pptx":
        raise ValueError(f"--out must name a .pptx file, got {str(args.out)!r}")
    if not 0.0 <= args.score <= 1.0:
        raise ValueError(f"--score must be from 0 to 1, got {args.score}")
    spec = None if args.detector == "none" else detector_spec(args.detector)
    model, out, image = _analyse(args)
    h, w = image.shape[:2]
    point = _point_from_args(args) or (w // 2, h // 2)  # the Receptive fields page starts at the centre too
    dets = None
    if spec is not None:
        det = build_detector(
            spec.name,
            device=model.device,
            seed=args.seed,
            allow_download=False if args.no_download else None,
            operator_file=operator_file_from_env(spec.env),
        )
        _warn_weights(det)
        dets = detect(det, image, args.score, size=args.size)
    runs = run_lesson(
        model, out, image, size=args.size, detections=dets, point=analyse_point(model, image, point, size=args.size)
    )
    data = build_deck(model, out, runs, style=style, source=Path(args.image).name)
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


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on bad input (one ``error:`` line on stderr).
    """
    args = build_parser().parse_args(argv)  # argparse exits 2 on its own errors
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ImageError, WeightsError, ValueError, OSError) as exc:
        # ImageError is a ValueError; OSError covers an --out folder that cannot be written.
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
