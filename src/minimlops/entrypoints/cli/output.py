"""What the commands print: results on stdout, errors and warnings on stderr.

An error or a warning is one line, printed as written: not cut into lines at
the console's width (a terminal wraps it, a pipe or a log keeps it whole), and
not read as markup (a message may quote ``[[columns]]`` or ``['a', 'b']``).
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err = Console(stderr=True)


def fail(message: object, code: int = 1) -> NoReturn:
    """Print ``error: <message>`` and exit with ``code`` (2: a setting or an
    argument is wrong; 1: the command could not do its work)."""
    err.print(f"[red]error:[/] {escape(str(message))}", soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: <message>``; the command goes on."""
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)
