"""A key made of other columns' values: how a row's parts are written.

A project whose rows are identified by several columns together (a date and
a store) declares its key column with ``from = ["sold_on", "store"]``. A
row's key is then its parts' values, each written one way, joined by ``|``:
``2026-06-20|17``. The same row gets the same key in every file (a corrected
row replaces the old one), and a prediction request that carries the parts
gets the key its row will have when it lands with its label.

How each type is written (``services/content_keys.joined_keys`` writes a
file's columns the same way, held equal by a test):

- string: as is, with ``\\`` written ``\\\\`` and ``|`` written ``\\|`` (so
  ``a|b`` + ``c`` and ``a`` + ``b|c`` stay two keys);
- integer: in decimal; boolean: ``true`` / ``false``;
- date: ``2026-06-20``; timestamp: in UTC, ``2026-06-20T14:05:00Z``, with
  ``.123456`` before the ``Z`` when it has fractions of a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

SEPARATOR = "|"


def part(value: Any) -> str:
    """One part's value as the key writes it."""
    kind = type(value)
    if kind is str:
        if "\\" in value or "|" in value:
            return value.replace("\\", "\\\\").replace("|", "\\|")
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is datetime:
        s = value.astimezone(UTC) if value.tzinfo is not None else value
        # (not strftime: glibc's %Y does not pad the year 999 to 0999, as Arrow does)
        text = f"{s.year:04d}-{s.month:02d}-{s.day:02d}T{s.hour:02d}:{s.minute:02d}:{s.second:02d}"
        return f"{text}.{s.microsecond:06d}Z" if s.microsecond else f"{text}Z"
    if kind is date:
        return value.isoformat()
    raise TypeError(f"a key part cannot be a {kind.__name__} ({value!r})")


def joined(values: Sequence[Any]) -> str | None:
    """A row's key from its parts' values, or None when one is missing."""
    if any(v is None for v in values):
        return None
    return SEPARATOR.join(map(part, values))


def of_row(row: Mapping[str, Any], parts: Sequence[str]) -> str | None:
    """The key of a row (a request's or a file's), by its parts' names."""
    return joined([row.get(name) for name in parts])
