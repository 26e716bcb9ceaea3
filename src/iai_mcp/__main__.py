"""``python -m iai_mcp``: the same as the ``iai-mcp`` command."""
from iai_mcp.cli import main

raise SystemExit(main())
