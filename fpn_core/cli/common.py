"""What the commands share: their options (declared once), the checks of values, tables and warnings

The options every command takes live in :class:`Parents`, argparse parent parsers declared
here once: ``run`` (the image, ``--device``, ``--seed``, ``--no-download``, ``--json``) and
``pyramid`` (the ResNet-50 + FPN configuration, ``--weights``, ``--size``, ``--repeats`` and
``--point``). ``--weights`` and ``--size``, which a detector reads with other defaults, are
declared by :func:`add_weights_option` and :func:`add_size_option`.

Checks go one way: argparse checks the options with fixed choices; every number is read by
:func:`number` in the command, so a bad one is a ``ValueError`` naming the option, which
``main`` prints as one ``error:`` line (status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..device import resolve_device
from ..export import check_export_settings
from ..fpn import ABLATIONS, MERGE_MODES, UPSAMPLE_MODES
from ..frameworks import (
    ConventionOverrides,
    build_framework_pyramid,
    is_framework_checkpoint,
    parse_input_format,
    parse_yes_no,
    read_framework_checkpoint,
)
from ..images import ImageError, load_image
from ..levels import DEFAULT_STAGES
from ..maps import CHANNEL_AGGREGATIONS, COLORMAPS, SCOPES, MapStyle
from ..pyramid import (
    DEFAULT_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    Pyramid,
    PyramidConfig,
    PyramidOutput,
    build_pyramid,
    run_pyramid,
)
from ..receptive import map_point
from ..weights import WEIGHT_CHOICES, WEIGHTS_ENV, Provenance, WeightsError, operator_file_from_env

__all__ = [
    "BAD_INPUT",
    "DEVICE_CHOICES",
    "EXIT_BAD_INPUT",
    "WARMUP",
    "Parents",
    "PyramidRun",
    "add_size_option",
    "add_weights_option",
    "analyse",
    "build_parents",
    "config_from_args",
    "number",
    "one_line",
    "parse_point",
    "provenance_lines",
    "shape_text",
    "table",
    "warn",
    "warn_weights",
]

#: The exit status of bad input (argparse's own errors exit with it too).
EXIT_BAD_INPUT = 2
#: The errors that are the user's input, not a bug: one ``error:`` line and status 2.
#: (ImageError is a ValueError; OSError covers an ``--out`` folder that cannot be written.)
BAD_INPUT: tuple[type[Exception], ...] = (ImageError, WeightsError, ValueError, OSError)
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
#: Untimed runs before the timed ones.
WARMUP = 1
#: PyramidConfig's field names, as the options that set them.
_OPTION_OF = {"out_channels": "--width", "stages": "--stages"}


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Parents:
    """The shared options, as argparse parent parsers (``add_parser(..., parents=[...])``).

    Attributes:
        run: every command's: the image, ``--device``, ``--seed``, ``--no-download``, ``--json``.
        pyramid: the pyramid commands': ``--width``, ``--stages``, ``--upsample``, ``--merge``,
            ``--no-p6``, ``--ablation``, ``--weights``, ``--size``, ``--repeats``, ``--point``.
    """

    run: argparse.ArgumentParser
    pyramid: argparse.ArgumentParser


def build_parents() -> Parents:
    """The parent parsers, built fresh (argparse shares a parent's actions with its children)."""
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("image", help="image file (JPEG, PNG, WebP, BMP or TIFF)")
    run.add_argument(
        "--device", choices=DEVICE_CHOICES, default=None, help="where to run (default: FPN_DEVICE, else auto)"
    )
    run.add_argument("--seed", default=0, help="seed of every random init (used where no weights are loaded)")
    run.add_argument("--no-download", action="store_true", help="never download weights")
    run.add_argument("--json", action="store_true", help="print JSON instead of a table")

    pyramid = argparse.ArgumentParser(add_help=False)
    pyramid.add_argument(
        "--width", dest="out_channels", default=256, help="FPN width d, a multiple of 8 from 16 to 512"
    )
    pyramid.add_argument(
        "--stages", default=",".join(DEFAULT_STAGES), help="contiguous backbone stages, e.g. c2,c3,c4,c5"
    )
    pyramid.add_argument("--upsample", choices=UPSAMPLE_MODES, default="nearest", help="top-down upsampling")
    pyramid.add_argument("--merge", choices=MERGE_MODES, default="sum", help="how lateral and top-down combine")
    pyramid.add_argument("--no-p6", action="store_true", help="leave out the stride-2 subsampled top level")
    pyramid.add_argument("--ablation", choices=tuple(ABLATIONS), default="full", help="the paper's Table 1 variants")
    add_weights_option(
        pyramid,
        default="imagenet",
        help=f"{', '.join(WEIGHT_CHOICES)}, or a local weights file ({WEIGHTS_ENV} also names one)",
    )
    add_size_option(pyramid, default=DEFAULT_SIZE, help=f"long side of the network input, {MIN_SIZE} to {MAX_SIZE} px")
    pyramid.add_argument("--repeats", default=3, help=f"timed runs (median), after {WARMUP} warm-up")
    pyramid.add_argument(
        "--point",
        metavar="X,Y",
        default=None,
        help="a point in image pixels: add receptive fields (theoretical and effective) and stage shares there",
    )
    return Parents(run=run, pyramid=pyramid)


def add_map_style_options(parser: argparse.ArgumentParser) -> None:
    """The map style of the commands that draw pictures (export, deck): one declaration, checked by ``MapStyle``."""
    parser.add_argument("--cmap", dest="colormap", default="jet", help=f"colormap, e.g. {', '.join(COLORMAPS)}")
    parser.add_argument("--alpha", default=0.5, help="color weight of overlays, 0 to 1")
    parser.add_argument(
        "--reduction",
        dest="aggregation",
        choices=CHANNEL_AGGREGATIONS,
        default="mean",
        help="channel aggregation: how the channels become one map",
    )
    parser.add_argument("--scope", choices=SCOPES, default="per-level", help="color range per map or shared")


def map_style(args: argparse.Namespace, scale: float) -> MapStyle:
    """The checked style of :func:`add_map_style_options` at ``scale`` (one ``error:`` line if bad)."""
    return check_export_settings(
        colormap=args.colormap,
        alpha=number("--alpha", args.alpha, float),
        aggregation=args.aggregation,
        scope=args.scope,
        scale=scale,
    )


def add_weights_option(parser: argparse.ArgumentParser, *, default: str, help: str) -> None:
    """``--weights``: a named set of weights, ``random``, or a file; missing weights fall back (warnings).

    With it, the conventions of an mmdetection or detectron2 file whose own are unknown:
    ``--input-format RGB|BGR`` and ``--stride-in-1x1 yes|no`` (they win over the file's
    ``<stem>.conventions.json`` sidecar, which wins over what the file says).
    """
    parser.add_argument("--weights", default=default, help=help)
    parser.add_argument(
        "--input-format",
        default=None,
        metavar="RGB|BGR",
        help="an mmdetection/detectron2 file's input channel order (default: what the file or its sidecar says)",
    )
    parser.add_argument(
        "--stride-in-1x1",
        default=None,
        metavar="yes|no",
        help="an mmdetection/detectron2 file's stride-2 on the 1x1 conv1 (MSRA/caffe) instead of the 3x3",
    )


def convention_overrides(args: argparse.Namespace) -> ConventionOverrides:
    """``--input-format`` and ``--stride-in-1x1``, checked (empty when neither is given).

    Raises:
        ValueError: a bad value, naming the option.
    """
    try:
        fmt = None if args.input_format is None else parse_input_format(args.input_format)
    except ValueError as exc:
        raise ValueError(f"--input-format: {exc}") from None
    try:
        stride = None if args.stride_in_1x1 is None else parse_yes_no(args.stride_in_1x1)
    except ValueError as exc:
        raise ValueError(f"--stride-in-1x1: {exc}") from None
    return ConventionOverrides(input_format=fmt, stride_in_1x1=stride, source="command line")


def framework_file(weights: str) -> bool:
    """Whether ``--weights`` names an mmdetection or detectron2 checkpoint file."""
    return weights not in WEIGHT_CHOICES and is_framework_checkpoint(weights)


def build_cli_pyramid(config: PyramidConfig, args: argparse.Namespace) -> Pyramid:
    """The pyramid ``--weights`` asks for: an mmdetection/detectron2 file with its conventions (and the
    overrides), else the engine's chain (:func:`fpn_core.pyramid.build_pyramid`).

    Raises:
        ValueError: ``--input-format`` / ``--stride-in-1x1`` given for weights that are not such a file.
        WeightsError: the file cannot be shown (one message that says why).
    """
    overrides = convention_overrides(args)
    if framework_file(config.weights):
        return build_framework_pyramid(read_framework_checkpoint(config.weights, overrides), config)
    if not overrides.empty:
        raise ValueError(
            "--input-format and --stride-in-1x1 set the conventions of an mmdetection or detectron2 file; "
            f"--weights {config.weights} is not one"
        )
    return build_pyramid(
        config, allow_download=False if args.no_download else None, operator_file=operator_file_from_env()
    )


def add_size_option(parser: argparse.ArgumentParser, *, default: int | None, help: str) -> None:
    """``--size``: the long side of the network input, in pixels; read with :func:`number`."""
    parser.add_argument("--size", default=default, help=help)


def number(
    option: str,
    value: object,
    kind: type[int] | type[float],
    *,
    low: float | None = None,
    high: float | None = None,
    unit: str = "",
) -> int | float:
    """An option's value as a number of ``kind``, inside ``[low, high]`` where given.

    Args:
        option: The flag, for the message (``"--size"``).
        value: The text given, or the option's default.
        kind: ``int`` or ``float``.
        low, high: Inclusive bounds; either may be None.
        unit: Said after the bounds (``" pixels"``).

    Raises:
        ValueError: naming the option and the value.
    """
    try:
        result = kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{option} must be {what}, got {value!r}") from None
    inside = (low is None or result >= low) and (high is None or result <= high)  # False for NaN
    if not inside:
        if high is None:
            raise ValueError(f"{option} must be at least {low:g}{unit}, got {value}")
        raise ValueError(f"{option} must be from {low:g} to {high:g}{unit}, got {value}")
    return result


def parse_point(text: str | None) -> tuple[float, float] | None:
    """``--point X,Y`` as two finite numbers, or None when not given.

    Raises:
        ValueError: naming the option and the bad value.
    """
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


# --------------------------------------------------------------------------- the pyramid commands


@dataclass(frozen=True)
class PyramidRun:
    """One pyramid run from the options: the model, its output, the image and the checked values.

    Attributes:
        model: The pyramid built from the options.
        out: Its timed output on the image.
        image: The image as loaded (before resizing).
        size: ``--size``, checked.
        point: ``--point``, checked, or None.
    """

    model: Pyramid
    out: PyramidOutput
    image: np.ndarray
    size: int
    point: tuple[float, float] | None


def config_from_args(args: argparse.Namespace) -> tuple[PyramidConfig, list[str]]:
    """The configuration the pyramid options describe (``--width`` ... ``--seed``), and device notices.

    Raises:
        ValueError: an option value the engine refuses, naming the option.
    """
    out_channels = number("--width", args.out_channels, int)
    seed = number("--seed", args.seed, int)
    device, notice = resolve_device(args.device)
    try:
        config = PyramidConfig(
            out_channels=out_channels,
            stages=tuple(s.strip() for s in args.stages.split(",") if s.strip()),
            upsample=args.upsample,
            merge=args.merge,
            p6=not args.no_p6,
            ablation=args.ablation,
            weights=args.weights,
            device=str(device),
            seed=seed,
        )
    except ValueError as exc:
        # The engine names its own fields; say which option that is.
        option = next((opt for field, opt in _OPTION_OF.items() if str(exc).startswith(field)), None)
        raise ValueError(f"{option}: {exc}" if option else str(exc)) from None
    return config, [notice] if notice else []


def analyse(args: argparse.Namespace) -> PyramidRun:
    """Check the pyramid options, load the image, build the model and run it (cheap checks first).

    Raises:
        ValueError: a bad option value or image (``ImageError``), naming it.
    """
    size = number("--size", args.size, int, low=MIN_SIZE, high=MAX_SIZE, unit=" pixels")
    repeats = number("--repeats", args.repeats, int, low=1)
    config, notices = config_from_args(args)
    point = parse_point(args.point)
    image = load_image(args.image)
    if point is not None:
        map_point(point, image.shape[:2], image.shape[:2])  # inside the image, before the model is built
    model = build_cli_pyramid(config, args)
    warn_weights(model.provenance)
    out = run_pyramid(model, image, size=size, repeats=repeats, warmup=WARMUP)
    for notice in [*notices, *out.notices]:
        warn(notice)
    return PyramidRun(model=model, out=out, image=image, size=size, point=point)


# --------------------------------------------------------------------------- output


def one_line(message: object, limit: int = 400) -> str:
    """``message`` on one line (whitespace runs become one space), cut to ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def warn(message: str) -> None:
    """One ``warning:`` line on stderr."""
    print(f"warning: {one_line(message, limit=200)}", file=sys.stderr)


def warn_weights(provenance: Provenance) -> None:
    """One short stderr line per weights fallback, then what was used instead."""
    for reason in provenance.fallbacks:
        warn(f"weights fallback: {reason.split('. ')[0]}")
    if provenance.fell_back:
        warn(f"{provenance.requested!r} weights unavailable, using {provenance.backbone}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Aligned columns: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            str(c).ljust(wd) if i < left else str(c).rjust(wd)
            for i, (c, wd) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return [line(headers), line(["-" * wd for wd in widths]), *(line(r) for r in rows)]


def shape_text(shape: Sequence[int]) -> str:
    """``1×256×16×16``."""
    return "×".join(str(s) for s in shape)


def provenance_lines(weights: Mapping) -> list[str]:
    """The ``weights`` lines of a table: what was asked for, what was used, and every fallback.

    Args:
        weights: ``Provenance.as_dict()``.
    """
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
        lines += [f"         {i}. {one_line(reason)}" for i, reason in enumerate(fallbacks, 1)]
    else:
        lines.append("         no fallback: got what was asked for")
    return lines
