"""The ``export`` command: write every map, overlay, a slide and metadata.json, as files or one zip

Usage::

    python -m fpn_core export IMAGE --out DIR [the options of inspect] [--scale 1|2|3] [--zip]
        [--cmap NAME] [--alpha A] [--reduction mean|max|l2|std|pc1] [--scope per-level|shared] [--no-timings]

``--point X,Y`` adds the ERF and contribution maps at that point (``fpn_core.export``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..export import EXPORT_SCALES, build_export, write_export, zip_export
from ..report import point_analysis
from .common import Parents, add_map_style_options, analyse, map_style

__all__ = ["ZIP_NAME", "add_parser", "run"]

ZIP_NAME = "fpn_export.zip"


def add_parser(subcommands: argparse._SubParsersAction, parents: Parents) -> argparse.ArgumentParser:
    """Register ``export``: the pyramid options, and where and how to write."""
    parser = subcommands.add_parser(
        "export", parents=[parents.pyramid, parents.run], help="write maps, overlays, a slide and metadata"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write into (created if needed)")
    parser.add_argument("--scale", type=int, choices=EXPORT_SCALES, default=1, help="PNG resolution multiplier")
    parser.add_argument("--zip", action="store_true", help=f"write one {ZIP_NAME} into --out instead of files")
    add_map_style_options(parser)
    parser.add_argument(
        "--no-timings", action="store_true", help="leave timings out of metadata.json (byte-identical bundles)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the export settings, build and run the pyramid, then write the bundle."""
    style = map_style(args, float(args.scale))
    done = analyse(args)
    extra = {"point": point_analysis(done.model, done.image, done.point, done.size)} if done.point is not None else {}
    files = build_export(
        done.out, style, scale=float(args.scale), timings=not args.no_timings, source=Path(args.image).name, **extra
    )
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
