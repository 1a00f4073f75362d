"""``python -m arcnn`` is the ``arcnn`` command."""

from arcnn.cli import main

main()
