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
