"""Human-readable ``minimlops status``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_status(console: Console, data: dict[str, Any]) -> None:
    """Print tables, champion, last ingestion and training, and queues."""
    tables = Table("table", "rows", title="warehouse")
    for name, count in data["tables"].items():
        tables.add_row(name, f"{count:,}")
    console.print(tables)
    champ = data.get("champion")
    console.print(f"champion: {'version ' + champ['version'] + ' — ' + champ['reason'] if champ else 'none yet'}")
    if data.get("serving"):
        console.print(f"serving: version {data['serving']}")
    ing = data.get("last_ingestion")
    if ing:
        console.print(f"last ingestion: {ing['source_uri']} {ing['status']} "
                      f"({ing['rows_loaded']:,} rows) at {ing['ingested_at']}"
                      + (f" — {ing['message']}" if ing.get("message") else ""))  # fmt: skip
    tr = data.get("last_training")
    if tr:
        console.print(f"last training: version {tr['version']} ({tr['algorithm']}), accuracy "
                      f"{tr['accuracy']:.3f}, {'promoted' if tr['decision']['promote'] else 'kept'}: "
                      f"{tr['decision']['reason']}")  # fmt: skip
    queues = Table("subscription", "topic", "pending", "in flight", "done", "dead-lettered",
                   title="message bus")  # fmt: skip
    for q in data.get("queues", []):
        queues.add_row(q["subscription"], q["topic"], str(q["pending"]), str(q["leased"]),
                       str(q["acked"]), str(q["dead_lettered"]))  # fmt: skip
    console.print(queues)
    for d in data.get("dead_letters", []):
        console.print(f"[red]dead letter[/] {d['subscription']} {d['id']} after {d['attempts']} "
                      f"attempts: {d['error']}")  # fmt: skip
