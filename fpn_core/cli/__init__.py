"""Command line: inspect a pyramid, export its maps and overlays or a lecture deck, or detect objects on one image

Usage::

    fpn-explorer COMMAND IMAGE [options]        (or: python -m fpn_core COMMAND IMAGE [options])

    inspect   shapes, statistics, time, FLOPs and parameters of every stage and level (``cli.inspect``)
    export    every map, overlay, a slide and metadata.json, as files or a zip (``cli.export``)
    deck      the whole lesson as a 16:9 PowerPoint deck with speaker notes (``cli.deck``)
    detect    detections, each traced to the pyramid level that found it (``cli.detect``)

Bad input (an unreadable image, an option value the engine refuses) exits with status 2
and one line on stderr, ``error: <message>``. Weights that cannot be found are not an
error: the engine falls back (see ``fpn_core.weights``), the fallbacks are printed as
``warning:`` lines on stderr and recorded in the report's provenance.

A command is a module with ``add_parser(subcommands, parents)`` (registers its sub-parser,
with the shared options of :class:`~fpn_core.cli.common.Parents`) and ``run(args)`` (returns
the exit status); :data:`COMMANDS` lists them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import deck, detect, export, inspect
from .common import BAD_INPUT, EXIT_BAD_INPUT, build_parents, one_line
from .export import ZIP_NAME
from .inspect import format_table

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "MODULE_PROG", "ZIP_NAME", "build_parser", "format_table", "main"]

#: The commands, in the order ``--help`` lists them.
COMMANDS = (inspect, export, deck, detect)
#: The program name when started as ``python -m fpn_core``.
MODULE_PROG = "python -m fpn_core"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command of :data:`COMMANDS`.

    Args:
        prog: The program name its messages use (default: the name it was started as).
    """
    parser = argparse.ArgumentParser(prog=prog or _started_as(), description="FPN Explorer from the command line.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = build_parents()
    for command in COMMANDS:
        command.add_parser(subcommands, parents).set_defaults(handler=command.run)
    return parser


def _started_as() -> str:
    """The script's name (``fpn-explorer``), or ``python -m fpn_core`` when run as the module."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return MODULE_PROG if name in ("", "-m", "__main__.py") else name


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments without the program name (default ``sys.argv[1:]``).
        prog: The program name for messages (default: the name it was started as).

    Returns:
        The exit status: 0 on success, 2 on bad input (one ``error:`` line on stderr).
    """
    args = build_parser(prog).parse_args(argv)  # argparse exits 2 on its own errors
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BAD_INPUT as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
