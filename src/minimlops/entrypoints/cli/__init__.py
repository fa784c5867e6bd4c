"""The ``minimlops`` command line: its commands, and how they reach a running
server or the data home."""
