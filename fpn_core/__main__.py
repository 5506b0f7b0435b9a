"""``python -m fpn_core``: the command line (see ``fpn_core.cli``)."""

from .cli import MODULE_PROG, main

raise SystemExit(main(prog=MODULE_PROG))
