"""``minimlops init``: a draft project inferred from a CSV file, for a person to review.

The file is read with Arrow a block at a time, every column as text; per column
we count what its values parse as, how many are missing, how many distinct
values there are (up to a cap) and their range. From those counts come the
decisions, each with its reason and, when doubtful, what to check: the tools
our users know fail most often here (numbers read as categories, 0/1 columns
read as continuous, a regression target with few values read as classes), so
nothing doubtful is decided silently.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minimlops.domain.project import NAME_RULE, RESERVED, ProjectError, usable_name
from minimlops.services.validate import PATTERNS, blank_as_null, delimiter, header_names

DISTINCT_CAP = 1000  # distinct values remembered per column
FEW_VALUES = 10  # an integer column with at most this many values may be categories
MAX_CLASSES = 50  # a string target with more distinct values is not a classification
# Only true/false reads as boolean: "Yes"/"No" stay text, so answers and
# feedback speak the data's own values ("Yes"), as the user wrote them.
# A date as exports write it (2007-11-11, 11/11/2007), a time of day allowed
_DATE = r"^(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4})([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?Z?)?$"
SHOWN = 12  # observed categories written per column
# How files write "no value" besides an empty field (R's NA, UCI's ?, SQL's NULL, ...)
MISSING_WORDS = ("NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "?", "#N/A", "-")
TRUE = {"true"}
FALSE = {"false"}
_ID_NAME = re.compile(r"(^|[_ .-])(id|key|uuid)$|Id$|ID$", re.IGNORECASE)


@dataclass
class Profile:
    """What one column's values look like."""

    name: str
    rows: int = 0
    missing: int = 0
    integers: int = 0
    floats: int = 0
    booleans: int = 0
    distinct: Counter[str] = field(default_factory=Counter)
    overflow: bool = False  # more distinct values than DISTINCT_CAP
    low: float = math.inf
    high: float = -math.inf
    longest: int = 0
    words: Counter[str] = field(default_factory=Counter)  # MISSING_WORDS seen, and how often
    unnamed: bool = False  # no name in the header (pandas' index)
    dates: int = 0  # values written like a date (2007-11-11, 11/11/2007), times allowed

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def type(self) -> str:
        if self.present == 0:
            return "string"
        if self.integers == self.present:
            return "integer"
        if self.floats == self.present:
            return "float"
        if self.booleans == self.present:
            return "boolean"
        return "string"

    @property
    def n_distinct(self) -> int:
        return len(self.distinct)

    @property
    def unique(self) -> bool:
        return (
            not self.overflow
            and self.missing == 0
            and self.present > 0
            and all(n == 1 for n in self.distinct.values())
        ) or (self.overflow and self.missing == 0 and max(self.distinct.values()) == 1)


def profile(path: Path) -> tuple[list[Profile], int, tuple[str, ...], list[str]]:
    """Per column, counts over the whole file; the number of rows; the words
    the file writes for no value (read as missing in the counts); and the text
    columns where those words may be values.

    Raises:
        ProjectError: the file is not a readable CSV.
    """
    try:
        head = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16))
        names = head.schema.names
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ProjectError(f"{path}: not a readable CSV file: {str(exc).splitlines()[0]}") from None

    def read(missing: tuple[str, ...]) -> tuple[list[Profile], int]:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=4 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
        profiles = [
            Profile(n, unnamed=not raw.strip())  # as ingestion reads the header
            for n, raw in zip(header_names(names), names, strict=True)
        ]
        rows = 0
        for batch in reader:
            rows += batch.num_rows
            for p, column in zip(profiles, batch.columns, strict=True):
                _count(p, pc.utf8_trim_whitespace(column), missing)
        return profiles, rows

    profiles, rows = read(())
    words, texts = missing_words(profiles), []
    if words:  # read again, those words as no value
        first = profiles
        profiles, rows = read(words)
        texts = [
            p.name
            for p, before in zip(profiles, first, strict=True)
            if p.type == "string" and set(before.words) & set(words)
        ]
    for p in profiles:
        if p.type == "integer":  # "3.0" and "+3" are the whole number 3, as ingestion reads them
            whole: Counter[str] = Counter()
            for value, n in p.distinct.items():
                whole[str(_whole(value))] += n
            p.distinct = whole
    return profiles, rows, words, texts


def missing_words(profiles: list[Profile]) -> tuple[str, ...]:
    """The MISSING_WORDS a file uses for no value: those found in a column whose
    other values are all numbers (or all true/false), where they cannot be data."""
    found: set[str] = set()
    for p in profiles:
        seen = sum(p.words.values())
        if (
            seen
            and seen < p.present
            and (p.floats + seen == p.present or p.booleans + seen == p.present)
        ):
            found |= set(p.words)
    return tuple(w for w in MISSING_WORDS if w in found)


def _whole(value: str) -> int:
    return int(value.split(".", 1)[0])


def _count(p: Profile, text: pa.Array, missing: tuple[str, ...] = ()) -> None:
    text = blank_as_null(text, missing)  # as ingestion reads it
    p.rows += len(text)
    p.missing += text.null_count
    present = text.drop_null()
    if len(present) == 0:
        return
    words = pc.is_in(present, pa.array(MISSING_WORDS, pa.string()))
    if pc.any(words).as_py():
        for item in pc.value_counts(present.filter(words)).to_pylist():
            p.words[item["values"]] += item["counts"]
    p.integers += int(pc.sum(pc.match_substring_regex(present, PATTERNS["INTEGER"])).as_py() or 0)
    p.floats += int(pc.sum(pc.match_substring_regex(present, PATTERNS["FLOAT"])).as_py() or 0)
    lower = pc.utf8_lower(present)
    p.booleans += int(pc.sum(pc.is_in(lower, pa.array(sorted(TRUE | FALSE)))).as_py() or 0)
    p.longest = max(p.longest, int(pc.max(pc.utf8_length(present)).as_py() or 0))
    p.dates += int(pc.sum(pc.match_substring_regex(present, _DATE)).as_py() or 0)
    if not p.overflow:
        for item in pc.value_counts(present).to_pylist():
            p.distinct[item["values"]] += item["counts"]
        if len(p.distinct) > DISTINCT_CAP:
            p.overflow = True
    elif max(p.distinct.values(), default=0) == 1:  # still checking uniqueness for a key
        for item in pc.value_counts(present).to_pylist():
            p.distinct[item["values"]] += item["counts"]
    numbers = pc.cast(present, pa.float64(), safe=False) if _all_numbers(present) else None
    if numbers is not None:
        p.low = min(p.low, float(pc.min(numbers).as_py()))
        p.high = max(p.high, float(pc.max(numbers).as_py()))


def _all_numbers(present: pa.Array) -> bool:
    return bool(pc.all(pc.match_substring_regex(present, PATTERNS["FLOAT"])).as_py())


class Checks(list[str]):
    """The doubtful decisions, printed by ``init`` and each written above the
    field or column it is about (``where``: a field or a column name; "" for
    the columns as a whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.where: dict[str, list[str]] = {}

    def add(self, where: str, text: str) -> None:
        self.append(text)
        self.where.setdefault(where, []).append(text)


@dataclass
class Draft:
    """The inferred project as file data, the decisions that made it, and per
    column what the file held (written as comments, not rules)."""

    data: dict[str, Any]
    decisions: list[str]
    checks: Checks
    key_added: bool = False
    observed: dict[str, str] = field(default_factory=dict)
    unlabelled: int = 0  # rows without a target


def project_name(text: str) -> str:
    """A project name (lower-case letters, digits, - and _) from a file's or
    a directory's name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_") or "project"
    return (name if name[0].isalpha() else f"p-{name}")[:63]


def _name_of(path: Path) -> str:
    return project_name(path.stem)


def _hint(name: str, columns: list[str]) -> str:
    """What the user probably meant: another delimiter, or a column spelt alike."""
    import difflib

    if len(columns) == 1 and (sep := delimiter(columns[0])):
        return (
            f" (one column was read: the file seems separated by {sep!r}, not commas; "
            "save it as comma-separated CSV)"
        )
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6) or [
        c for c in columns if c.lower() == name.lower()
    ]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _positive(values: list[str]) -> tuple[str, str]:
    """``values`` in their order (:func:`_sorted`)."""
    lowered = {v.lower(): v for v in values}
    for word in ("1", "yes", "true", "y", "t", "positive", "pos"):
        if word in lowered:
            return lowered[word], f"{lowered[word]!r} reads as the positive answer"
    return values[-1], "neither value reads as yes/true/1: the last in sorted order"


def draft(
    path: Path,
    target: str,
    *,
    key: str | None = None,
    task: str | None = None,
    name: str | None = None,
) -> Draft:
    """Infer a project from a CSV file (named ``name``, else after the file).

    Raises:
        ProjectError: the target or key is not a column, the key is not unique,
            or the task cannot be decided (the message says which flag to pass).
    """
    profiles, rows, words, texts = profile(path)
    by = {p.name: p for p in profiles}
    if target not in by:
        raise ProjectError(
            f"--target {target!r} is not a column of {path.name}"
            f"{_hint(target, list(by))}; columns: {list(by)}"
        )
    if rows == 0:
        raise ProjectError(f"{path.name} has a header but no rows: nothing to infer from")
    decisions, checks = [f"read {rows:,} rows and {len(profiles)} columns of {path.name}"], Checks()
    if words:
        decisions.append(
            f"missing values: {list(words)} read as no value (seen among numbers or true/false)"
        )
        also = (
            (
                f"; remove one if a text column uses it as a value ({', '.join(texts[:6])} "
                "hold it too)"
            )
            if texts
            else ""
        )
        checks.add(
            "missing_values",
            f"missing_values {list(words)}: read as no value in every column{also}",
        )
    if bad := [n for n in by if not usable_name(n)]:
        raise ProjectError(
            f"columns {bad} cannot be warehouse columns ({NAME_RULE}); rename "
            "them in the file's header"
        )
    if clash := [n for n in by if n in RESERVED]:
        raise ProjectError(
            f"columns {clash} have names the pipeline uses for its own columns; "
            "rename them in the file"
        )
    key_name, key_added = _pick_key(by, target, key, decisions, checks)
    t = by[target]
    if t.present == 0:
        raise ProjectError(f"target {target!r} is empty in every row: nothing to learn from")
    if t.missing:  # the file still drafts a project; ingestion names those rows
        checks.add(
            target,
            f"{target}: empty in {t.missing:,} of {rows:,} rows. A row without "
            "its answer cannot train, so ingestion sets this file aside with a report "
            "naming them: remove those rows, or start the server with "
            f"MINIMLOPS_MAX_BAD_ROWS={t.missing} to load the others (skipped rows "
            "are reported)",
        )
    task, classes, positive = _pick_task(t, task, decisions, checks)
    columns = []
    if key_added:
        columns.append(
            {
                "name": key_name,
                "type": "string",
                "required": True,
                "kind": "text",
                "generated": True,
                "description": "generated at ingestion for files "
                "without it: <file hash>-<row number>",
            }
        )
    observed = {}
    for p in profiles:
        col = _column(p, p.name == key_name, p.name == target, task, classes, decisions, checks)
        columns.append(col)
        if note := _observed(p, col, p.name == key_name):
            observed[p.name] = note
    data: dict[str, Any] = {
        "name": name or _name_of(path),
        "description": f"from {path.name}",
        "key": key_name,
        "target": target,
        "task": task,
    }
    if positive is not None:
        data["positive_class"] = positive
    if words:
        data["missing_values"] = list(words)
    data["primary_metric"] = {"binary": "log_loss", "multiclass": "log_loss", "regression": "rmse"}[
        task
    ]
    decisions.append(
        f"gate: {data['primary_metric']} (the default for {task}; primary_metric changes it)"
    )
    data["columns"] = columns
    full = [c["name"] for c in columns if c["required"] and c["name"] not in (key_name, target)]
    if full:
        checks.add(
            "",
            f"required: {len(full)} columns were never empty here and are marked "
            f"required ({', '.join(full[:6])}{', ...' if len(full) > 6 else ''}); "
            "set required = false for any that later files or requests may leave "
            "blank (then it is imputed)",
        )
    return Draft(data, decisions, checks, key_added, observed, t.missing)


def _pick_key(
    by: dict[str, Profile], target: str, key: str | None, decisions: list[str], checks: Checks
) -> tuple[str, bool]:
    if key is not None:
        if key not in by:
            raise ProjectError(
                f"--key {key!r} is not a column{_hint(key, list(by))}; columns: {list(by)}"
            )
        p = by[key]
        if not p.unique or p.type not in ("integer", "string"):
            raise ProjectError(
                f"--key {key!r} is not a key: "
                + (
                    f"{p.missing:,} rows have no value"
                    if p.missing
                    else "some values repeat"
                    if not p.unique
                    else f"it holds {p.type} values"
                )
            )
        decisions.append(f"key: {key} (given; unique and never empty)")
        return key, False
    fits = [
        p
        for p in by.values()
        if p.name != target
        and p.unique
        and not p.unnamed
        and p.type in ("integer", "string")
        and (p.type == "string" or p.low >= 0)
    ]
    named = [p for p in fits if _ID_NAME.search(p.name)]
    if named or fits:
        p = (named or fits)[0]
        decisions.append(
            f"key: {p.name} (unique and never empty" + (", and named like an id)" if named else ")")
        )
        if not named:
            checks.add(
                p.name,
                f"key {p.name}: chosen only because it is unique; pass --key "
                "if another column identifies a row",
            )
        if p.type == "string" and p.dates == p.present:
            checks.add(
                p.name,
                f"key {p.name}: dates; a key is not a feature, so a derived "
                "feature of it (a month, a day of the week) is how a model could use "
                "them",
            )
        return p.name, False
    name = next(n for n in ("row_id", "row_number", "minimlops_row") if n not in by)
    decisions.append(
        f"key: none of the columns is unique and never empty; {name} is "
        "generated at ingestion (<file hash>-<row number>): land your files as "
        "they are"
    )
    checks.add(
        name,
        f"key {name}: every landed row is a new row; if a column does identify a row, "
        "pass --key (then a later row with a known key replaces that row)",
    )
    return name, True


def _sorted(p: Profile) -> list[str]:
    """A column's distinct values in their order: numbers by value (1, 2, 10,
    not 1, 10, 2), text as text."""
    if p.type in ("integer", "float"):
        return sorted(p.distinct, key=float)
    return sorted(p.distinct)


def _pick_task(
    t: Profile, task: str | None, decisions: list[str], checks: Checks
) -> tuple[str, list[Any] | None, Any]:
    values = _sorted(t)
    if task is None:
        if t.type == "float" and t.integers < t.present:
            task = "regression"
            decisions.append(f"task: regression (target {t.name} holds decimal numbers)")
        elif t.n_distinct == 2:
            task = "binary"
            decisions.append(f"task: binary (target {t.name} has two values: {values})")
        elif t.type in ("integer", "float") and t.n_distinct > 2:
            if t.n_distinct > 20 or t.overflow:
                task = "regression"
                decisions.append(
                    f"task: regression (target {t.name}: "
                    f"{'many' if t.overflow else t.n_distinct} whole numbers)"
                )
                # Codes of classes are a doubt only while a multiclass target
                # could hold them: more distinct values than MAX_CLASSES (a
                # price, a count) are quantities, and --task multiclass would
                # be refused, so the note would be a false alarm.
                if not t.overflow and t.n_distinct <= MAX_CLASSES:
                    checks.add(
                        "task",
                        f"task: {t.name} holds {t.n_distinct} distinct whole "
                        "numbers only; if they are codes of classes, pass --task "
                        "multiclass",
                    )
            else:
                raise ProjectError(
                    f"target {t.name!r} has {t.n_distinct} distinct whole numbers "
                    f"{[_typed(v, t.type) for v in values[:10]]}: "
                    "they may be classes or quantities. Pass --task multiclass or "
                    "--task regression"
                )
        elif t.n_distinct > MAX_CLASSES or t.overflow:
            raise ProjectError(
                f"target {t.name!r} holds text with {t.n_distinct:,}+ distinct "
                "values: too many for classes. Is it the right column?"
            )
        elif t.n_distinct < 2:
            raise ProjectError(f"target {t.name!r} has a single value {values}: nothing to learn")
        else:
            task = "multiclass"
            decisions.append(f"task: multiclass (target {t.name} has {t.n_distinct} values)")
    else:
        decisions.append(f"task: {task} (given)")
    if task == "regression":
        if t.type not in ("integer", "float"):
            raise ProjectError(f"--task regression needs a numeric target; {t.name!r} holds text")
        return task, None, None
    if t.overflow or t.n_distinct > MAX_CLASSES:
        raise ProjectError(f"target {t.name!r} has too many distinct values for {task}")
    if task == "binary" and t.n_distinct != 2:
        raise ProjectError(f"--task binary needs two values; {t.name!r} has {values}")
    if task == "multiclass" and t.n_distinct < 3:
        raise ProjectError(
            f"--task multiclass needs 3 values or more; {t.name!r} has {values} (binary?)"
        )
    classes = [_typed(v, t.type) for v in values]
    positive = None
    if task == "binary":
        raw, why = _positive(values)
        positive = _typed(raw, t.type)
        share = t.distinct[raw] / t.present
        decisions.append(f"positive class: {raw!r} ({why}; {share:.0%} of rows)")
        checks.add(
            "positive_class",
            f"positive_class {raw!r}: the class whose probability is served; "
            "swap it if the other is the one you care about",
        )
    return task, classes, positive


def _shown(value: str) -> str:
    """A value as a TOML comment can hold it: quoted, escaped, at most 40 characters."""
    text = json.dumps(value if len(value) <= 40 else value[:39] + "…", ensure_ascii=False)
    return text.replace("\x7f", "\\u007f")


def _number(value: float, type_: str) -> str:
    return str(int(value)) if type_ == "integer" else f"{value:.6g}"


def _observed(p: Profile, col: dict[str, Any], is_key: bool) -> str | None:
    """What this file held, to copy into rules if they should hold for every
    file and request: the range of a number, the categories of a text column."""
    if is_key or p.unnamed or p.present == 0 or "allowed" in col or col.get("kind") == "text":
        return None
    if p.type in ("integer", "float"):
        if p.type == "integer" and not p.overflow and p.n_distinct <= FEW_VALUES:
            return "observed values " + ", ".join(
                str(v) for v in sorted(int(v) for v in p.distinct)
            )
        return f"observed {_number(p.low, p.type)} to {_number(p.high, p.type)}"
    if p.type != "string":
        return None
    top = [v for v, _ in p.distinct.most_common(SHOWN)]
    more = (
        ""
        if not p.overflow and p.n_distinct <= SHOWN
        else (f" and {'over ' if p.overflow else ''}{p.n_distinct - SHOWN:,} more")
    )
    return "observed " + ", ".join(_shown(v) for v in top) + more


def _typed(value: str, type_: str) -> Any:
    if type_ == "integer":
        return int(value)
    if type_ == "float":
        return float(value)
    if type_ == "boolean":
        return value.lower() in TRUE
    return value


def _column(
    p: Profile,
    is_key: bool,
    is_target: bool,
    task: str,
    classes: list[Any] | None,
    decisions: list[str],
    checks: Checks,
) -> dict[str, Any]:
    col: dict[str, Any] = {"name": p.name, "type": p.type, "required": p.missing == 0 or is_target}
    say = f"{p.name}: {p.type}"
    if p.missing:
        say += f", optional ({p.missing:,} of {p.rows:,} empty)"
    if p.unnamed and not is_target and not is_key:
        col.update(required=False, kind="text")  # later files may leave it out
        decisions.append(say + ", no name in the header (pandas' index?), optional, not a feature")
        checks.add(
            p.name,
            f"{p.name}: a column with no name, as pandas writes its index "
            "(to_csv(index=False) leaves it out); not a feature and not the key: a "
            "row's position is nothing to learn from, and every file restarts it",
        )
        return col
    if is_target and classes is not None:
        col["allowed"] = classes
        say += f", classes {classes}"
    elif p.type in ("integer", "float") and not is_key:
        if p.low >= 0:
            col["min"] = 0
            say += ", never negative (min = 0)"
        if (
            p.type == "integer"
            and not is_target
            and 2 <= p.n_distinct <= FEW_VALUES
            and not p.overflow
        ):
            observed = sorted(int(v) for v in p.distinct)
            if observed == [0, 1]:
                col["kind"] = "categorical"
                say += ", 0/1 (encoded as a category)"
                checks.add(
                    p.name,
                    f"{p.name}: 0/1 values, encoded as a category; fine as a number "
                    'too (kind = "numeric")',
                )
            else:
                checks.add(
                    p.name,
                    f"{p.name}: only {p.n_distinct} distinct whole numbers "
                    f'{observed}: codes of categories? then kind = "categorical"',
                )
    elif is_key and p.type == "integer":
        col.update(min=0, max=2147483647)
    if p.type == "string" and not is_target and not is_key:
        share = p.n_distinct / max(p.present, 1)
        if p.overflow or (p.n_distinct > 50 and share > 0.5):
            col["kind"] = "text"
            say += (
                f", free text ({'over ' if p.overflow else ''}{p.n_distinct:,} distinct),"
                " not a feature"
            )
            checks.add(
                p.name,
                f"{p.name}: mostly distinct text, so not used by the model; a derived "
                "feature can extract something from it",
            )
        else:
            say += f", a category ({p.n_distinct} value{'s' if p.n_distinct != 1 else ''} seen)"
        if p.present and p.dates == p.present:
            checks.add(
                p.name,
                f"{p.name}: dates (such as {min(p.distinct)!r}), read as "
                f"{'text' if col.get('kind') == 'text' else 'a category'}: a derived "
                "feature can turn them into what a model can use on new dates (a "
                "year, a month, a day of the week, days since an event)",
            )
        col["max_length"] = max(64, 2 ** math.ceil(math.log2(max(p.longest, 1) * 2)))
    if not is_key and not is_target and p.present == 0:
        checks.add(
            p.name, f"{p.name}: empty in every row: nothing to learn from; leave it out of features"
        )
    if not is_key and not is_target and not p.overflow and p.n_distinct == 1:
        only = next(iter(p.distinct))
        checks.add(
            p.name,
            f"{p.name}: one value only ({only!r}"
            + (f", empty in {p.missing:,} rows" if p.missing else " in every row")
            + "): "
            + (
                "only whether it is empty can be learnt"
                if p.missing
                else "nothing to learn from; leave it out of features"
            ),
        )
    if is_key:
        say += ", the key"
        if p.type == "string":
            col["kind"] = "text"
            col["max_length"] = max(64, p.longest * 2)
    if is_target:
        say += ", the target"
    decisions.append(say)
    return col
