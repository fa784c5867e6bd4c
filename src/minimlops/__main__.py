"""``python -m minimlops`` runs the command line."""

from minimlops.entrypoints.cli.main import main

# The guard matters: worker processes (forkserver, spawn) import __main__ again.
if __name__ == "__main__":
    main()
