"""A project: one tabular data set declared in one reviewed file (project.toml).

Every layer reads the data set's columns, key, target, task and rules from a
:class:`Project` and nothing else names them. :func:`parse` turns the file's
data into a checked Project; every refusal names the field and what is wrong.
Reading the file and importing derived-feature code are in ``minimlops.projects``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

from minimlops.domain.splits import SplitSpec
from minimlops.errors import MinimlopsError

TYPES = ("integer", "float", "string", "boolean", "date", "timestamp")
KINDS = ("numeric", "categorical", "boolean", "text", "date")
TIME_TYPES = ("date", "timestamp")
TASKS = ("binary", "multiclass", "regression")
BQ_TYPES = {
    "integer": "INTEGER",
    "float": "FLOAT",
    "string": "STRING",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
# A boolean cell's words (any case), read to a boolean by ingestion itself
# (services/validate.py: the warehouse gets typed values, on both backends):
# a landed file's, a CSV given to `minimlops predict`'s and a request's.
BOOLEAN_WORDS = {
    **dict.fromkeys(("true", "t", "yes", "y", "1"), True),
    **dict.fromkeys(("false", "f", "no", "n", "0"), False),
}
# Each task's metrics, and for the gate: the primary metric's direction.
METRICS = {
    "binary": {"accuracy": "max", "roc_auc": "max", "log_loss": "min", "brier": "min", "f1": "max"},
    "multiclass": {"accuracy": "max", "macro_f1": "max", "log_loss": "min"},
    "regression": {"rmse": "min", "mae": "min", "r2": "max"},
}
DEFAULT_METRIC = {"binary": "log_loss", "multiclass": "log_loss", "regression": "rmse"}
# Names the pipeline's own columns take in its tables; a data set may not use them.
RESERVED = (
    "split",
    "ingestion_id",
    "source_uri",
    "ingested_at",
    "uuid",
    "created_at",
    "model_version",
    "probability",
    "probabilities",
    "prediction",
    "shadow_model_version",
    "shadow_probability",
    "shadow_prediction",
    "label",
    "received_at",
    "source",
    "labelled_at",
    "landed",  # training's read of labelled predictions: whether their row landed
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# A column may be named as in the user's file (spaces, dashes: "education-num"),
# which DuckDB and BigQuery's flexible column names both take quoted; not with
# quotes, backticks, backslashes, dots or control characters.
_COLUMN_NAME = re.compile(r"^[^\x00-\x1f\"`\\.\[\]]{1,300}$")
NAME_RULE = "no quotes, backticks, backslashes, dots, brackets or leading/trailing spaces"


DEFAULT_THRESHOLD = 0.5


def usable_name(name: Any) -> TypeGuard[str]:
    """A column name both warehouses and the pipeline's SQL can hold."""
    return isinstance(name, str) and bool(_COLUMN_NAME.match(name)) and name == name.strip()


MAX_KEY = 2**31 - 1  # integer keys: the split and sample hashes stay in 64-bit SQL
INT64 = (-(2**63), 2**63 - 1)  # an integer column is BIGINT/INT64 in every table


class ProjectError(MinimlopsError, ValueError):
    """The project file is wrong; the message names the field (a column by its
    name), the wrong value and what is allowed. A MinimlopsError, so every
    command reports it as an error line; a ValueError, as it always was."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the data set, with its value rules."""

    name: str
    type: str
    required: bool = False
    description: str = ""
    kind: str = "numeric"  # how a feature is encoded: numeric, categorical, boolean, text
    allowed: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    # the key only: a file without this column gets one per row at ingestion,
    # "<hash of the row's values, 32 hex>-<occurrence in the file>": a row
    # landed again is the same row (services/content_keys.py)
    generated: bool = False
    # date and timestamp columns: how the file writes them, in strptime's
    # words ("%d/%m/%Y"); None reads ISO 8601 ("2026-06-20", "2026-06-20T14:05:00+02:00")
    format: str | None = None
    # a generated key made of other columns' values ("from" in the file): a
    # row is "2026-06-20|17" for ("sold_on", "store"), so a corrected row
    # replaces the old one and a prediction's row is known by its inputs
    # (domain/keys.py); None: generated keys hash the whole row
    parts: tuple[str, ...] | None = None
    # words a file writes for "no value" in this column; None: the project's
    # (``missing_values = []`` keeps Ames' "NA", no alley, as a category)
    missing_values: tuple[str, ...] | None = None

    @property
    def bq_type(self) -> str:
        return BQ_TYPES[self.type]


@dataclass(frozen=True)
class DerivedSpec:
    """A feature computed by a Python function of one row (the project's code)."""

    name: str
    type: str
    function: str
    inputs: tuple[str, ...]
    kind: str = "numeric"
    description: str = ""


@dataclass(frozen=True)
class Project:
    """One data set: columns, key, target, task, features and the gate's metric."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: str
    target: str
    task: str
    features: tuple[str, ...]
    primary_metric: str
    positive_class: Any = None
    classes: tuple[Any, ...] | None = None
    derived: tuple[DerivedSpec, ...] = ()
    derived_module: str | None = None
    description: str = ""
    directory: str = ""  # where the project file (and its derived-feature code) lives
    extras: Mapping[str, Any] = field(default_factory=dict)  # example-specific options
    # words a file writes for "no value" ("NA", "?"), read as missing in every column
    missing_values: tuple[str, ...] = ()
    split: SplitSpec = SplitSpec()  # how labelled rows go to TRAIN, VALIDATION and TEST
    # binary: the positive class is answered from this probability up
    threshold: float = DEFAULT_THRESHOLD

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """What a prediction request carries: every column but the target."""
        return tuple(c.name for c in self.columns if c.name != self.target)

    @property
    def key_column(self) -> ColumnSpec:
        return self.column(self.key)

    def missing_in(self, name: str) -> tuple[str, ...]:
        """The words a file writes for no value in a column: its own, else the project's."""
        own = self.column(name).missing_values
        return self.missing_values if own is None else own

    @property
    def key_parts(self) -> tuple[str, ...] | None:
        """The columns a generated key is made of, or None (a key column of
        the files', or a hash of the whole row)."""
        return self.key_column.parts

    @property
    def key_is_row_hash(self) -> bool:
        """Whether the key is a hash of the whole row (made at ingestion, so a
        request carries none and a prediction gets its key from its label)."""
        return self.key_column.generated and self.key_parts is None

    @property
    def target_column(self) -> ColumnSpec:
        return self.column(self.target)

    @property
    def classification(self) -> bool:
        return self.task != "regression"

    @property
    def metric_direction(self) -> str:
        return METRICS[self.task][self.primary_metric]

    def fingerprint(self) -> str:
        """A hash of everything that shapes the tables and the model (not descriptions)."""
        shape = {
            "columns": [(c.name, c.type, c.required) for c in self.columns],
            "key": self.key,
            "target": self.target,
            "task": self.task,
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]

    def model_shape(self) -> dict[str, Any]:
        """What of the project shapes its models: features, derived features,
        the split (recorded in each version; compared on start)."""
        return {
            "features": list(self.features),
            "derived": [
                {"name": d.name, "function": d.function, "inputs": list(d.inputs)}
                for d in self.derived
            ],
            "split": self.split.to_dict(),
            # a version answers with the threshold it was measured with: a change retrains
            **({"threshold": self.threshold} if self.threshold != DEFAULT_THRESHOLD else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        """The declaration as plain data in the file's shape (recorded in the
        data home; :func:`parse` reads it back)."""
        data = asdict(self)
        for derived_only in ("directory", "classes"):
            data.pop(derived_only)
        data["example"] = dict(data.pop("extras"))
        data["columns"] = [
            {
                ("from" if k == "parts" else k): list(v) if isinstance(v, tuple) else v
                for k, v in c.items()
                if v is not None and (k != "generated" or v)
            }
            for c in data["columns"]
        ]
        data["derived"] = [{**d, "inputs": list(d["inputs"])} for d in data["derived"]]
        data["features"] = list(data["features"])
        data["missing_values"] = list(data["missing_values"])
        data["split"] = self.split.to_dict()
        if self.task != "binary":
            data.pop("positive_class")
        if self.threshold == DEFAULT_THRESHOLD:
            data.pop("threshold")
        return {k: v for k, v in data.items() if v is not None and v != []}


def _fail(where: str, message: str) -> ProjectError:
    return ProjectError(f"project file: {where}: {message}")


# Types other tools name: what a user coming from them most likely meant.
_TYPE_ALIASES = {
    "int": "integer",
    "int64": "integer",
    "long": "integer",
    "bigint": "integer",
    "number": "float",
    "decimal": "float",
    "double": "float",
    "real": "float",
    "numeric": "float",
    "float64": "float",
    "str": "string",
    "text": "string",
    "category": "string",
    "categorical": "string",
    "object": "string",
    "varchar": "string",
    "bool": "boolean",
}


def nearest(
    value: Any, choices: Sequence[Any], aliases: Mapping[str, str] | None = None
) -> str | None:
    """The choice spelt most like ``value`` (case aside, difflib's ratio at
    least 0.6), or the one an alias names; None when none is close."""
    import difflib

    if not isinstance(value, str) or not value:
        return None
    lower = {c.lower(): c for c in choices if isinstance(c, str)}
    found = (aliases or {}).get(value.lower())
    if found is None:
        match = difflib.get_close_matches(value.lower(), list(lower), n=1, cutoff=0.6)
        found = lower[match[0]] if match else None
    if found is None and len(value) >= 3:  # a short form: 'temp', 'store' (of store_id)
        starts = [c for c in lower if c.startswith(value.lower())]
        found = lower[starts[0]] if len(starts) == 1 else None
    return found if found != value else None


def closest(value: Any, choices: Sequence[Any], aliases: Mapping[str, str] | None = None) -> str:
    """ " (did you mean 'x'?)" for :func:`nearest`, else ""."""
    found = nearest(value, choices, aliases)
    return "" if found is None else f" (did you mean {found!r}?)"


def _unknown(fields: Sequence[str], known: Sequence[str]) -> str:
    """Unknown fields, each with its closest known field, and what is known."""
    shown = ", ".join(f"{f!r}{closest(f, known)}" for f in sorted(fields))
    return f"unknown field{'s' if len(fields) > 1 else ''} {shown}; known: {list(known)}"


def _a(type_: str) -> str:
    return f"an {type_}" if type_[0] in "aeiou" else f"a {type_}"


def _typed(value: Any, type_: str, where: str) -> Any:
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
    }[type_]
    if not ok and type_ == "float" and isinstance(value, float):
        raise _fail(where, f"{value!r} is not a finite number")
    if not ok:
        raise _fail(where, f"{value!r} is not {_a(type_)}")
    return float(value) if type_ == "float" else value


COLUMN_FIELDS = (
    "name",
    "type",
    "required",
    "description",
    "kind",
    "allowed",
    "min",
    "max",
    "max_length",
    "generated",
    "format",
    "from",
    "missing_values",
)


def _column_where(raws: Sequence[Any], i: int) -> str:
    """A column by its name; one without a usable name by its place, after the
    last column that has one (a person reads names, not indices)."""
    raw = raws[i]
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if usable_name(name):
        return f"column {name!r}"
    before = next(
        (
            r["name"]
            for r in reversed(raws[:i])
            if isinstance(r, Mapping) and usable_name(r.get("name"))
        ),
        None,
    )
    return f"[[columns]] table {i + 1}" + (f" (after column {before!r})" if before else "")


def _column(raws: Sequence[Any], i: int) -> ColumnSpec:
    raw = raws[i]
    where = _column_where(raws, i)
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a table with name and type")
    if unknown := [f for f in raw if f not in COLUMN_FIELDS]:
        raise _fail(where, _unknown(unknown, COLUMN_FIELDS))
    name = raw.get("name")
    if not usable_name(name):
        raise _fail(f"{where}.name", f"{name!r} is not a usable column name ({NAME_RULE})")
    type_ = raw.get("type")
    if type_ not in TYPES:
        raise _fail(
            f"{where}.type",
            f"unknown type {type_!r}{closest(type_, TYPES, _TYPE_ALIASES)}; one of {list(TYPES)}",
        )
    default_kind = {
        "integer": "numeric",
        "float": "numeric",
        "string": "categorical",
        "boolean": "boolean",
        "date": "date",
        "timestamp": "date",
    }[type_]
    kind = raw.get("kind", default_kind)
    if kind not in KINDS:
        raise _fail(
            f"{where}.kind", f"unknown kind {kind!r}{closest(kind, KINDS)}; one of {list(KINDS)}"
        )
    if kind == "numeric" and type_ not in ("integer", "float"):
        raise _fail(f"{where}.kind", f"a {type_} column cannot be numeric")
    if kind == "boolean" and type_ != "boolean":
        raise _fail(f"{where}.kind", "only a boolean column is of kind boolean")
    if (kind == "date") != (type_ in TIME_TYPES):
        raise _fail(
            f"{where}.kind",
            "only date and timestamp columns are of kind date, and they are of no other kind",
        )
    if type_ in TIME_TYPES and (
        bad := [f for f in ("allowed", "min", "max", "max_length") if raw.get(f) is not None]
    ):
        raise _fail(f"{where}.{bad[0]}", f"a {type_} column has no {bad[0]}")
    fmt = raw.get("format")
    if fmt is not None:
        if type_ not in TIME_TYPES:
            raise _fail(f"{where}.format", "only date and timestamp columns have a format")
        if not isinstance(fmt, str) or "%" not in fmt:
            raise _fail(
                f"{where}.format",
                f'{fmt!r} is not a strptime format, for instance "%d/%m/%Y" or "%Y-%m-%d %H:%M"',
            )
        if "%f" in fmt:
            raise _fail(
                f"{where}.format",
                "fractions of a second (%f) cannot be read with a format; "
                "leave format out to read ISO 8601, which takes them",
            )
    allowed = raw.get("allowed")
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed:
            raise _fail(f"{where}.allowed", "must be a non-empty list of values")
        allowed = tuple(_typed(v, type_, f"{where}.allowed") for v in allowed)
        if type_ == "integer" and (wide := [v for v in allowed if not INT64[0] <= v <= INT64[1]]):
            raise _fail(
                f"{where}.allowed",
                f"{wide[0]} does not fit an integer column ({INT64[0]} to {INT64[1]})",
            )
        if len(set(allowed)) != len(allowed):
            raise _fail(f"{where}.allowed", "lists a value twice")
    bounds = {}
    for b in ("min", "max"):
        if (v := raw.get(b)) is not None:
            if type_ not in ("integer", "float"):
                raise _fail(f"{where}.{b}", f"a {type_} column has no {b}")
            bounds[b] = float(_typed(v, "float", f"{where}.{b}"))
            if type_ == "integer" and not INT64[0] <= v <= INT64[1]:
                raise _fail(
                    f"{where}.{b}",
                    f"{v!r} does not fit an integer column ({INT64[0]} to {INT64[1]})",
                )
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise _fail(where, f"min {bounds['min']:g} is above max {bounds['max']:g}")
    max_length = raw.get("max_length")
    if max_length is not None and (
        type_ != "string" or not isinstance(max_length, int) or max_length < 1
    ):
        raise _fail(f"{where}.max_length", "only a string column has one, a positive integer")
    required = raw.get("required", False)
    if not isinstance(required, bool):
        raise _fail(f"{where}.required", "must be true or false")
    generated = raw.get("generated", False)
    if not isinstance(generated, bool):
        raise _fail(f"{where}.generated", "must be true or false")
    parts = raw.get("from")
    if parts is not None:
        if (
            not isinstance(parts, list)
            or len(parts) < 2
            or not all(isinstance(p, str) for p in parts)
        ):
            raise _fail(
                f"{where}.from",
                "the names of the two or more columns whose values together "
                'identify a row, for instance ["sold_on", "store"] (a key of one '
                "column is that column: key = its name)",
            )
        if "generated" in raw and not generated:
            raise _fail(
                f"{where}.from",
                "a key made from other columns is generated: drop generated = false",
            )
        generated, parts = True, tuple(parts)
    words = raw.get("missing_values")
    if words is not None:
        words = _missing_words(words, f"{where}.missing_values", ", or [] for none here")
    return ColumnSpec(
        name,
        type_,
        required,
        str(raw.get("description", "")),
        kind,
        allowed,
        bounds.get("min"),
        bounds.get("max"),
        max_length,
        generated,
        fmt,
        parts,
        words,
    )


KEY_PART_TYPES = ("string", "integer", "boolean", "date", "timestamp")


def _key_part(
    part: str, by_name: Mapping[str, ColumnSpec], key: str, target: str, parts: Sequence[str]
) -> None:
    """One column a key is made from: declared, required, not the key or the
    target, named once, and of a type whose values are written one way."""
    where = f"column {key!r}.from"
    col = by_name.get(part)
    if col is None:
        raise _fail(where, f"{part!r} is not a declared column{closest(part, list(by_name))}")
    if part in (key, target):
        raise _fail(where, f"{part!r} is the {'key' if part == key else 'target'} itself")
    if list(parts).count(part) > 1:
        raise _fail(where, f"names {part!r} twice")
    if not col.required:
        raise _fail(
            where,
            f"{part!r} is optional: a row's key needs all its parts (required = true)",
        )
    if col.type not in KEY_PART_TYPES:
        raise _fail(
            where,
            f"{part!r} is a {col.type} column: a key's parts are {', '.join(KEY_PART_TYPES)} "
            "(a decimal number can be written in more than one way)",
        )


def _missing_words(words: Any, where: str, also: str = "") -> tuple[str, ...]:
    if not isinstance(words, list) or not all(
        isinstance(m, str) and m.strip() == m and m for m in words
    ):
        raise _fail(
            where,
            "must be a list of non-empty words without spaces "
            f'around them, for instance ["NA", "?"]{also}',
        )
    return tuple(words)


def _derived(raw: Any, i: int, columns: Sequence[str]) -> DerivedSpec:
    where = f"[[derived]] table {i + 1}"
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a table with name, type, function and inputs")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(f"{where}.name", f"{name!r} is not a feature name")
    where = f"derived feature {name!r}"
    type_ = raw.get("type")
    plain = [t for t in TYPES if t not in TIME_TYPES]
    if type_ not in plain:
        raise _fail(
            f"{where}.type",
            f"unknown type {type_!r}{closest(type_, plain, _TYPE_ALIASES)}; one of {plain}",
        )
    function = raw.get("function", name)
    if not isinstance(function, str) or not function.isidentifier():
        raise _fail(f"{where}.function", f"{function!r} is not a Python function name")
    inputs = raw.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(c, str) for c in inputs):
        raise _fail(f"{where}.inputs", "must list the columns the function reads")
    if unknown := [c for c in inputs if c not in columns]:
        raise _fail(
            f"{where}.inputs",
            f"{unknown} are not columns of the project{closest(unknown[0], columns)}",
        )
    kind = raw.get(
        "kind",
        "numeric"
        if type_ in ("integer", "float")
        else "boolean"
        if type_ == "boolean"
        else "categorical",
    )
    if kind not in ("numeric", "categorical", "boolean"):
        raise _fail(
            f"{where}.kind",
            f"unknown kind {kind!r}"
            f"{closest(kind, ('numeric', 'categorical', 'boolean'))}; one of "
            "['numeric', 'categorical', 'boolean']",
        )
    return DerivedSpec(name, type_, function, tuple(inputs), kind, str(raw.get("description", "")))


TOP_FIELDS = (
    "name",
    "description",
    "key",
    "target",
    "task",
    "positive_class",
    "threshold",
    "features",
    "primary_metric",
    "columns",
    "derived",
    "derived_module",
    "example",
    "missing_values",
    "split",
)


def parse(data: Mapping[str, Any], directory: str = "") -> Project:
    """A checked Project from the project file's data.

    Raises:
        ProjectError: a field is missing or wrong; the message names it.
    """
    if unknown := [f for f in data if f not in TOP_FIELDS]:
        raise _fail("top level", _unknown(unknown, TOP_FIELDS))
    name = data.get("name")
    if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_-]{0,62}$", name):
        raise _fail("name", f"{name!r}: use lower-case letters, digits, - and _")
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise _fail("columns", "declare at least the key and the target ([[columns]])")
    columns = tuple(_column(raw_columns, i) for i in range(len(raw_columns)))
    names = [c.name for c in columns]
    if doubled := sorted({n for n in names if names.count(n) > 1}):
        raise _fail("columns", f"declared twice: {doubled}")
    if reserved := [n for n in names if n in RESERVED]:
        raise _fail("columns", f"{reserved} are names of the pipeline's own columns; rename")
    by_name = {c.name: c for c in columns}
    key, target = data.get("key"), data.get("target")
    for field_, value in (("key", key), ("target", target)):
        if value not in by_name:
            raise _fail(
                field_,
                f"{value!r} is not a declared column{closest(value, names)}; columns: {names}",
            )
    key, target = str(key), str(target)  # declared columns: names
    if key == target:
        raise _fail("target", "the target cannot be the key")
    key_col = by_name[key]
    if key_col.type not in ("integer", "string"):
        raise _fail("key", f"the key {key!r} must be an integer or string column")
    if not key_col.required:
        raise _fail("key", f"the key column {key!r} must be required = true")
    if others := [c.name for c in columns if c.parts is not None and c.name != key]:
        raise _fail(f"column {others[0]!r}.from", "only the key column is made from others")
    if others := [c.name for c in columns if c.generated and c.name != key]:
        raise _fail(f"column {others[0]!r}.generated", "only the key column can be generated")
    if key_col.generated and key_col.type != "string":
        raise _fail(
            f"column {key!r}.generated",
            "a generated key is a string column (its values are '<hash of the row>-<occurrence>')"
            if key_col.parts is None
            else "a key made from other columns is a string column (its values are "
            "theirs, joined: '2026-06-20|17')",
        )
    for part in key_col.parts or ():
        _key_part(part, by_name, key, target, key_col.parts or ())
    if key_col.type == "integer" and (
        key_col.min is None or key_col.min < 0 or key_col.max is None or key_col.max > MAX_KEY
    ):
        raise _fail(f"column {key!r}", f"an integer key needs min >= 0 and max <= {MAX_KEY}")
    target_col = by_name[target]
    if not target_col.required:
        raise _fail("target", f"the target column {target!r} must be required = true")
    task = data.get("task")
    if task not in TASKS:
        raise _fail("task", f"{task!r}{closest(task, TASKS)}; one of {list(TASKS)}")
    positive, classes = _classes(data, task, target_col)
    raw_derived = data.get("derived", [])
    if not isinstance(raw_derived, list):
        raise _fail("derived", "must be a list of tables ([[derived]])")
    derived = tuple(_derived(d, i, names) for i, d in enumerate(raw_derived))
    if clash := [d.name for d in derived if d.name in by_name or d.name in RESERVED]:
        raise _fail("derived", f"{clash} already name a column")
    module = data.get("derived_module")
    if derived and not module:
        raise _fail("derived_module", "name the Python file of the derived features")
    from minimlops.domain import splits

    split = splits.parse(data.get("split"), by_name, key, target)
    # not features unless listed: free text, the split's own labels, the groups
    # (a model that learns a group's id cannot use it on a group it never saw)
    left_out = {c.name for c in columns if c.kind == "text"}
    if split.strategy in ("group", "column") and split.column:
        left_out.add(split.column)
    features = _features(data, names, key, target, derived, left_out)
    if split.strategy == "column" and split.column in features:
        raise _fail("features", f"{split.column!r} holds the split; it cannot be a feature")
    metric = data.get("primary_metric", DEFAULT_METRIC[task])
    if metric not in METRICS[task]:
        other = next((t for t, m in METRICS.items() if metric in m), None)
        raise _fail(
            "primary_metric",
            f"{metric!r} is not a {task} metric"
            + (f" (it is a {other} one)" if other else closest(metric, list(METRICS[task])))
            + f"; one of {list(METRICS[task])}",
        )
    extras = data.get("example", {})
    if not isinstance(extras, Mapping):
        raise _fail("example", "must be a table")
    missing = _missing_words(data.get("missing_values", []), "missing_values")
    return Project(
        name,
        columns,
        key,
        target,
        task,
        features,
        metric,
        positive,
        classes,
        derived,
        module,
        str(data.get("description", "")),
        directory,
        dict(extras),
        tuple(missing),
        split,
        _threshold(data, task),
    )


def _threshold(data: Mapping[str, Any], task: str) -> float:
    """A binary task's decision threshold: the probability of the positive
    class from which it is the answer."""
    if "threshold" not in data:
        return DEFAULT_THRESHOLD
    value = data["threshold"]
    if task != "binary":
        raise _fail("threshold", "only a binary task has one (the positive class's probability)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise _fail(
            "threshold",
            f"{value!r} is not a probability between 0 and 1 (exclusive), for instance 0.3",
        )
    return float(value)


def _classes(data: Mapping[str, Any], task: str, target: ColumnSpec) -> tuple[Any, Any]:
    if task == "regression":
        if target.type not in ("integer", "float"):
            raise _fail(
                "task", f"regression needs a numeric target; {target.name!r} is {target.type}"
            )
        if "positive_class" in data:
            raise _fail("positive_class", "only a binary task has one")
        return None, None
    if target.type == "float":
        raise _fail(
            "task",
            f"{task} needs an integer, string or boolean target; "
            f"{target.name!r} is float (is the task regression?)",
        )
    classes = target.allowed
    if target.type == "boolean":
        classes = (False, True)
    if classes is None:
        raise _fail(f"column {target.name!r}.allowed", f"a {task} target must list its classes")
    if task == "binary":
        if len(classes) != 2:
            raise _fail(
                "task", f"binary needs exactly 2 classes; {target.name!r} allows {list(classes)}"
            )
        if "positive_class" not in data:
            raise _fail("positive_class", f"name the positive class: one of {list(classes)}")
        positive = _typed(data["positive_class"], target.type, "positive_class")
        if positive not in classes:
            raise _fail(
                "positive_class",
                f"{positive!r} is not one of {list(classes)}{closest(positive, classes)}",
            )
        negative = next(c for c in classes if c != positive)
        return positive, (negative, positive)
    if len(classes) < 3:
        raise _fail(
            "task",
            f"multiclass needs 3 classes or more; {target.name!r} allows "
            f"{list(classes)} (is the task binary?)",
        )
    if "positive_class" in data:
        raise _fail("positive_class", "only a binary task has one")
    return None, tuple(classes)


def _features(
    data: Mapping[str, Any],
    names: Sequence[str],
    key: str,
    target: str,
    derived: Sequence[DerivedSpec],
    text: set[str],
) -> tuple[str, ...]:
    """The features: as listed, or every column but key, target and free text
    (kind text), plus the derived ones."""
    raw = data.get("features")
    if raw is None:
        return tuple(n for n in names if n not in (key, target) and n not in text) + tuple(
            d.name for d in derived
        )
    if not isinstance(raw, list) or not raw or not all(isinstance(f, str) for f in raw):
        raise _fail("features", "must be a non-empty list of column or derived feature names")
    known = set(names) | {d.name for d in derived}
    if unknown := [f for f in raw if f not in known]:
        raise _fail(
            "features",
            f"{unknown} are neither columns nor derived features"
            f"{closest(unknown[0], sorted(known))}",
        )
    if target in raw:
        raise _fail("features", f"the target {target!r} cannot be a feature")
    if len(set(raw)) != len(raw):
        raise _fail("features", "lists a feature twice")
    return tuple(raw)


def compatible(recorded: Project, new: Project) -> list[str]:
    """Why ``new`` cannot run on a data home that holds ``recorded``'s data ([] = it can).

    Adding a nullable column is the only change allowed in place; descriptions,
    rules, features and the metric may change freely (they change no table).
    """
    problems = []
    for field_ in ("key", "target", "task"):
        if getattr(recorded, field_) != getattr(new, field_):
            problems.append(
                f"{field_} changed from {getattr(recorded, field_)!r} to {getattr(new, field_)!r}"
            )
    if recorded.key == new.key and _made(recorded) != _made(new):
        problems.append(
            f"key {new.key!r} is made another way ({_made(recorded)} before, {_made(new)} "
            "now): the rows landed so far keep their keys, so a row landed again would "
            "load beside its old one"
        )
    new_cols = {c.name: c for c in new.columns}
    removed, retyped, required = [], [], []
    for c in recorded.columns:
        if c.name not in new_cols:
            removed.append(c.name)
        elif new_cols[c.name].type != c.type:
            retyped.append(f"{c.name!r} retyped from {c.type} to {new_cols[c.name].type}")
        elif new_cols[c.name].required and not c.required:
            required.append(c.name)
    old = {c.name for c in recorded.columns}
    added = [c.name for c in new.columns if c.name not in old and c.required]
    # one line per kind of change, a few names each: two unrelated data sets
    # would otherwise list every column twice
    for names, what, why in (
        (removed, "{} removed", ""),
        (retyped, "{}", ""),
        (required, "{} made required", " (old rows may have no value)"),
        (added, "{} added as required", " (only nullable columns can be added)"),
    ):
        if names:
            shown = [n if names is retyped else repr(n) for n in names[:6]]
            listed = ", ".join(shown) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            problems.append(
                ("column " if len(names) == 1 else "columns ") + what.format(listed) + why
            )
    return problems


def _made(p: Project) -> str:
    """How a project's rows get their keys, in a few words."""
    col = p.key_column
    if col.parts:
        return " and ".join(col.parts) + " joined"
    return "a hash of each row's values" if col.generated else "the files' own column"


def shape_changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How the project's model shape changed since a version was trained ([]: not)."""
    changes = []
    old, new = recorded.get("features") or [], now["features"]
    if added := [f for f in new if f not in old]:
        changes.append(f"features added: {added}")
    if removed := [f for f in old if f not in new]:
        changes.append(f"features removed: {removed}")
    if "derived" in recorded and recorded["derived"] != now["derived"] and not (added or removed):
        changes.append("derived features changed")
    if recorded.get("threshold", DEFAULT_THRESHOLD) != now.get("threshold", DEFAULT_THRESHOLD):
        changes.append(
            f"threshold changed from {recorded.get('threshold', DEFAULT_THRESHOLD)} "
            f"to {now.get('threshold', DEFAULT_THRESHOLD)}"
        )
    if recorded.get("split", {"strategy": "random"}) != now["split"]:
        from minimlops.domain.splits import describe

        changes.append(
            f"split changed from {describe(recorded.get('split'))} to {describe(now['split'])}"
        )
    return changes
