"""Generated keys from a row's values: the same row gets the same key in any
file, whatever its batches or column order; a repeated row is counted."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest

from minimlops.services.content_keys import ContentKeys

ROWS = pa.table(
    {
        "name": pa.array(["a", None, "a", "b", "a", "", "c"]),
        "score": pa.array([1.0, 2.0, 1.0, -0.0, 1.0, 0.0, 5.5]),
        "count": pa.array([1, None, 1, 3, 1, 0, 7], pa.int64()),
        "flag": pa.array([True, False, True, None, True, False, True]),
        "day": pa.array([date(2020, 1, 1)] * 5 + [None, date(2021, 5, 5)], pa.date32()),
        "at": pa.array([datetime(2020, 1, 1, tzinfo=UTC)] * 7, pa.timestamp("us", tz="UTC")),
    }
)
LAST = ROWS.num_rows - 1  # a row of its own, with every value


def keys(table: pa.Table, batch: int | None = None, columns: list[str] | None = None) -> list:
    make = ContentKeys(columns or table.column_names)
    step = batch or max(table.num_rows, 1)
    out = []
    for start in range(0, table.num_rows, step):
        out += make(table.slice(start, step)).to_pylist()
    return out


def test_a_repeated_row_is_counted_in_the_files_order_across_batches() -> None:
    whole = keys(ROWS)
    assert [k.rsplit("-", 1)[1] for k in whole] == ["1", "1", "2", "1", "3", "1", "1"]
    assert len({k.rsplit("-", 1)[0] for k in whole}) == 5
    for batch in (1, 2, 4):
        assert keys(ROWS, batch) == whole


def test_the_key_does_not_depend_on_column_order_or_on_an_empty_new_column() -> None:
    whole = keys(ROWS)
    shuffled = ROWS.select(list(reversed(ROWS.column_names)))
    assert keys(shuffled) == whole
    grown = ROWS.append_column("note", pa.nulls(ROWS.num_rows, pa.string()))
    assert keys(grown) == whole
    # a value in the new column makes that row another row
    noted = ROWS.append_column("note", pa.array([None] * LAST + ["x"]))
    assert keys(noted)[:LAST] == whole[:LAST] and keys(noted)[LAST] != whole[LAST]


@pytest.mark.parametrize("column", ROWS.column_names)
def test_every_column_and_every_empty_value_tells_rows_apart(column: str) -> None:
    """Change one value of a row (to another value, or to empty): its key
    changes and the other rows keep theirs."""
    whole = keys(ROWS)
    other = {
        "name": "c ",
        "score": 5.5000000001,
        "count": 8,
        "flag": False,
        "day": date(2021, 5, 6),
        "at": datetime(2020, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    }[column]
    kind = ROWS.schema.field(column).type
    for value in (other, None):
        values = [*ROWS.column(column).to_pylist()[:LAST], value]
        at = ROWS.schema.get_field_index(column)
        got = keys(ROWS.set_column(at, column, pa.array(values, kind)))
        assert got[LAST] != whole[LAST], (column, value)
        assert got[:LAST] == whole[:LAST]


def test_negative_zero_and_every_nan_are_one_value() -> None:
    a = pa.table({"x": pa.array([0.0, float("nan")])})
    b = pa.table({"x": pa.array([-0.0, -float("nan")])})
    assert keys(a) == keys(b)


def test_distinct_rows_get_distinct_keys_at_scale() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    table = pa.table(
        {
            "small": rng.integers(0, 300, n),  # few values: rows differ in combinations
            "other": rng.integers(0, 300, n),
            "cat": pa.array(rng.integers(0, 40, n)).cast(pa.string()),
        }
    )
    distinct = len(set(zip(*(c.to_pylist() for c in table.columns), strict=True)))
    got = keys(table, batch=30_000)
    assert len({k.rsplit("-", 1)[0] for k in got}) == distinct


def test_a_block_repeated_across_many_batches_is_numbered_block_by_block() -> None:
    """Occurrences survive the merges of what earlier batches saw."""
    block = pa.table({"x": pa.array(range(50), pa.int64()), "y": pa.array(["a", "b"] * 25)})
    table = pa.concat_tables([block] * 7)
    got = keys(table, batch=13)
    assert got == keys(table)
    assert [int(k.rsplit("-", 1)[1]) for k in got] == [i // 50 + 1 for i in range(350)]
    assert len({k.rsplit("-", 1)[0] for k in got}) == 50


def test_a_whole_number_is_one_value_in_an_integer_or_a_float_column() -> None:
    """A column retyped between integer and float keeps its rows' keys."""
    ints = pa.table({"n": pa.array([1, -3, 0, None, 2**40], pa.int64())})
    floats = pa.table({"n": pa.array([1.0, -3.0, -0.0, None, float(2**40)])})
    assert keys(ints) == keys(floats)


def test_a_rows_first_key_is_the_one_its_first_occurrence_in_a_file_gets() -> None:
    """A labelled prediction is keyed as a row of its values would be when it
    lands: the first such row of a file, whatever else is around it."""
    from minimlops.services.content_keys import first_keys

    whole = keys(ROWS)
    firsts = first_keys(ROWS, ROWS.column_names)
    assert [f for f, k in zip(firsts, whole, strict=True) if k.endswith("-1")] == [
        k for k in whole if k.endswith("-1")
    ]
    assert firsts[2] == whole[0]  # the second "a" row: the first one's key
    assert [first_keys(ROWS.slice(i, 1), ROWS.column_names)[0] for i in range(LAST + 1)] == firsts
    assert first_keys(ROWS.slice(0, 0), ROWS.column_names) == []
