"""The data sets the generic tests run on, of different shapes.

titanic: binary, integer key, derived features, missing values;
wine: multiclass, string key, string target, all numeric;
diabetes: regression, integer key, an integer category;
churn: binary with a Yes/No target, string key, 28 columns of every type,
booleans, blanks, column names with spaces and dashes.
"""

from __future__ import annotations

import pyarrow as pa

from minimlops import projects
from minimlops.domain.project import Project
from minimlops.generate import rows_for

NAMES = ("titanic", "wine", "diabetes", "churn")


def load(name: str) -> Project:
    return projects.load(name)


def rows(project: Project, n: int, seed: int = 0, start: int = 1) -> pa.Table:
    """Generated rows of a project (the Titanic generator for Titanic)."""
    return rows_for(project, n, seed=seed, start_id=start)


def request_of(project: Project, row: dict) -> dict:
    """A prediction request from a data row: every column but the target."""
    return {k: v for k, v in row.items() if k != project.target}


def sparse(project: Project, row: dict) -> dict:
    """The same request with every optional value left out."""
    return {
        k: v
        for k, v in request_of(project, row).items()
        if project.column(k).required and k != project.key
    }


# orders_dates: binary, string key, a required date, an optional timestamp
# (UTC) and a string column holding an ISO date that a derived feature reads.
# Not in NAMES: its rows are made here (``orders_dates_rows``), as Arrow gives
# them to training (dates and aware datetimes), not by minimlops.generate.
ORDERS_DATES = {
    "name": "orders_dates",
    "key": "order_id",
    "target": "returned",
    "task": "binary",
    "positive_class": True,
    "columns": [
        {"name": "order_id", "type": "string", "required": True},
        {"name": "returned", "type": "boolean", "required": True},
        {"name": "amount", "type": "float", "required": True, "min": 0.0},
        {"name": "channel", "type": "string", "allowed": ["web", "shop", "phone"]},
        {"name": "order_date", "type": "date", "required": True},
        {"name": "shipped_at", "type": "timestamp"},
    ],
}


def orders_dates() -> Project:
    return projects.from_dict(ORDERS_DATES)


def orders_dates_rows(n: int, seed: int = 0) -> list[dict]:
    """Rows of orders_dates as training reads them: returns more likely in
    December, at weekends, for late shipping hours and large amounts."""
    import datetime as dt

    import numpy as np

    rng = np.random.default_rng(seed)
    start = dt.date(2024, 1, 1)
    out = []
    for i in range(n):
        day = start + dt.timedelta(days=int(rng.integers(0, 900)))
        shipped = (
            None
            if rng.random() < 0.15
            else dt.datetime.combine(day, dt.time(int(rng.integers(0, 24))), dt.UTC)
            + dt.timedelta(days=int(rng.integers(0, 4)), minutes=int(rng.integers(0, 60)))
        )
        amount = float(round(rng.gamma(2.0, 40.0), 2))
        score = (
            1.5 * (day.month == 12)
            + 1.0 * (day.weekday() >= 5)
            + (0.08 * shipped.hour - 1 if shipped else 0)
            + amount / 100
            - 1.5
        )
        out.append(
            {
                "order_id": f"o{seed}-{i}",
                "returned": bool(rng.random() < 1 / (1 + np.exp(-score))),
                "amount": amount,
                "channel": None
                if rng.random() < 0.1
                else str(rng.choice(["web", "shop", "phone"])),
                "order_date": day,
                "shipped_at": shipped,
            }
        )
    return out


# events: binary, integer key, a date, a date in a declared format and an
# optional timestamp (not in NAMES: the examples' generic tests stay as they are)
EVENTS = {
    "name": "events",
    "key": "event_id",
    "target": "converted",
    "task": "binary",
    "positive_class": True,
    "columns": [
        {"name": "event_id", "type": "integer", "required": True, "min": 0, "max": 2**31 - 1},
        {"name": "converted", "type": "boolean", "required": True},
        {"name": "day", "type": "date", "required": True},
        {"name": "signed_on", "type": "date", "format": "%d/%m/%Y"},
        {"name": "seen_at", "type": "timestamp"},
        {"name": "amount", "type": "float", "min": 0.0},
    ],
}


def events() -> Project:
    """A project with date and timestamp columns, one of them in a declared format."""
    return projects.from_dict(EVENTS)
