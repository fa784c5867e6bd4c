"""``python -m minimlops`` runs the command line."""

from minimlops.entrypoints.cli import main

main()
