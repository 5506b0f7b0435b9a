"""``python -m fpn_core``: the command line (see ``fpn_core.cli``)."""

from .cli import main

raise SystemExit(main())
