"""``python -m server`` is the ``tot-dispatch`` command."""

from server.cli import main

main()
