"""Keys from a row's content, for a data set whose files carry no key.

A generated key is ``<hash of the row's values, 32 hex>-<occurrence>``: the
occurrence counts the rows of the same file with the same values (1 for the
first). So a file exported again with more rows (a cumulative export) gives
its old rows the keys they had, and they replace themselves instead of
landing twice, in every split at once; rows that repeat within a file stay as
many rows as the file has.

The hash is of the typed values (``1`` and ``1.0`` are one value, in an
integer column or a float one), one column at a time by name and summed, so it
does not depend on the columns' order, and a column that is empty in a row adds
nothing (a project that gains an optional column keeps its rows' keys while the
column stays empty). Two 64-bit lanes give 128 bits: two different rows share a
key with a chance of about n²/2¹²⁹. The occurrence counts rows by the first
lane: two different rows of one file that share it (a chance of about n²/2⁶⁵
for the file) are numbered 1 and 2, so the second one's key changes in a later
file without the first, and it loads once more; keys stay unique either way.

Vectorized with NumPy (splitmix64's finalizer); a string column's distinct
values are hashed once each with BLAKE2b, in Python. A million rows of four
columns take about 0.3 s; a string column with a value per row (names, free
text) adds about 1 s a million rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_SEEDS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place: a bijection of 64-bit words that
    spreads every input bit over the output."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def _digests(values: Sequence[str]) -> np.ndarray:
    """BLAKE2b-128 of each string, as two 64-bit words a row."""
    raw = b"".join(hashlib.blake2b(v.encode(), digest_size=16).digest() for v in values)
    return np.frombuffer(raw, "<u8").reshape(-1, 2)


def _words(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A typed column as two 64-bit words a value (the value's bits, or its
    hash for a string), and which values are empty."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    empty = col.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        coded = pc.dictionary_encode(col)
        both = _digests(coded.dictionary.to_pylist())
        at = pc.fill_null(coded.indices, 0).to_numpy(zero_copy_only=False)
        if len(both) == 0:
            zero = np.zeros(len(col), np.uint64)
            return zero, zero.copy(), empty
        return both[at, 0], both[at, 1], empty
    if pa.types.is_floating(col.type):
        f = pc.fill_null(col, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        f = np.where(np.isnan(f), np.nan, f + 0.0)  # one NaN; -0.0 is 0.0
        bits = f.view(np.uint64)
    elif pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        # a whole number as the float it equals (1, 1.0 and true are one
        # value: a column retyped between integer and float keeps its keys);
        # past 2**53, where floats skip integers, its own bits
        ints = pc.fill_null(pc.cast(col, pa.int64()), 0).to_numpy(zero_copy_only=False)
        exact = np.abs(ints) <= 2**53
        bits = np.where(exact, ints.astype(np.float64).view(np.uint64), ints.view(np.uint64))
    else:  # date, timestamp: their integer representation (days, microseconds)
        width = pa.int32() if pa.types.is_date32(col.type) else pa.int64()
        bits = pc.fill_null(col.view(width), 0).to_numpy(zero_copy_only=False)
        bits = bits.astype(np.int64).view(np.uint64)
    return bits, bits.copy(), empty


def _tags(name: str) -> tuple[np.uint64, np.uint64]:
    word = np.frombuffer(hashlib.blake2b(name.encode(), digest_size=16).digest(), "<u8")
    return word[0], word[1]


def row_hashes(table: pa.Table, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit hashes a row of ``table``, over ``columns`` (by name)."""
    n = table.num_rows
    acc = [np.zeros(n, np.uint64), np.zeros(n, np.uint64)]
    with np.errstate(over="ignore"):
        for name in columns:
            tags = _tags(name)
            words = _words(table.column(name))
            for lane in (0, 1):
                x = _mix(words[lane] ^ tags[lane])
                x[words[2]] = 0  # an empty value adds nothing
                acc[lane] += x
        return _mix(acc[0] ^ _SEEDS[0]), _mix(acc[1] ^ _SEEDS[1])


class _Seen:
    """How many times each row hash appeared in the file's earlier batches.

    Sorted runs of distinct hashes with their counts (16 bytes a row), merged
    when a newer run grows as long as the one before it, as in a
    log-structured merge tree: a batch is one binary search per run (a few),
    each hash is copied a logarithmic number of times, and nothing is done a
    row at a time in Python (a dict of Python ints took ~90 bytes a row)."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, counts)

    def count(self, distinct: np.ndarray, times: np.ndarray) -> np.ndarray:
        """How many times each of these distinct sorted hashes was seen
        before; then count ``times`` more of each."""
        before = np.zeros(len(distinct), np.int64)
        found = np.zeros(len(distinct), bool)
        for hashes, counts in self.runs:
            at = np.minimum(np.searchsorted(hashes, distinct), len(hashes) - 1)
            hit = hashes[at] == distinct
            before[hit] = counts[at[hit]]
            counts[at[hit]] += times[hit]  # runs are disjoint: at most one hit a hash
            found |= hit
        new = ~found
        if new.any():
            self.runs.append((distinct[new], times[new].astype(np.int64)))
            while len(self.runs) > 1 and len(self.runs[-1][0]) >= len(self.runs[-2][0]):
                (h2, c2), (h1, c1) = self.runs.pop(), self.runs.pop()
                hashes, counts = np.concatenate([h1, h2]), np.concatenate([c1, c2])
                order = np.argsort(hashes, kind="stable")  # two sorted runs: a merge
                self.runs.append((hashes[order], counts[order]))
        return before


class ContentKeys:
    """The generated keys of one file's rows, a batch at a time, in the
    file's order (the occurrence counts across batches)."""

    def __init__(self, columns: Sequence[str]) -> None:
        if not columns:
            raise ValueError("a content key needs at least one column")
        self.columns = list(columns)
        self._seen = _Seen()

    def __call__(self, table: pa.Table) -> pa.Array:
        """``<32 hex>-<occurrence>`` for each row of ``table``."""
        n = table.num_rows
        if n == 0:
            return pa.array([], pa.string())
        first, second = row_hashes(table, self.columns)
        order = np.argsort(first, kind="stable")
        ranked = first[order]
        starts = np.r_[True, ranked[1:] != ranked[:-1]]
        where = np.flatnonzero(starts)
        before = self._seen.count(ranked[where], np.diff(np.r_[where, n]))
        # within the batch, the k-th row of a hash (0-based), in file order
        group = np.cumsum(starts) - 1
        rank = np.arange(n) - where[group]
        occurrence = np.empty(n, np.int64)
        occurrence[order] = before[group] + rank + 1
        hexed = np.stack([first, second], axis=1).astype(">u8").tobytes().hex().encode()
        offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
        digest = pa.Array.from_buffers(
            pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(hexed)]
        )
        return pc.binary_join_element_wise(digest, pc.cast(pa.array(occurrence), pa.string()), "-")


def first_keys(table: pa.Table, columns: Sequence[str]) -> list[str]:
    """Each row's generated key as the first row with its values in a file
    (``-1``), whatever the other rows of ``table``: the key a landed row with
    these values was given, for a prediction labelled later (its inputs and
    its label) to be matched with it."""
    if table.num_rows == 0:
        return []
    first, second = row_hashes(table, columns)
    hexed = np.stack([first, second], axis=1).astype(">u8").tobytes().hex()
    return [hexed[i : i + 32] + "-1" for i in range(0, len(hexed), 32)]


def joined_keys(table: pa.Table, parts: Sequence[str]) -> pa.Array:
    """A key made of other columns (``from``): each row's parts written as
    :mod:`minimlops.domain.keys` writes them, joined by ``|``; null where a
    part is null. Vectorized: a million rows of a date and a store ~0.2 s."""
    texts = []
    for name in parts:
        col = table.column(name)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        kind = col.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            text = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), "|", "\\|")
        elif pa.types.is_timestamp(kind):
            stamp = pc.cast(col, pa.timestamp("us", tz="UTC"))
            second = pc.floor_temporal(stamp, unit="second")
            whole = pc.strftime(pc.cast(second, pa.timestamp("s", tz="UTC")), "%Y-%m-%dT%H:%M:%S")
            micros = pc.subtract(pc.cast(stamp, pa.int64()), pc.cast(second, pa.int64()))
            fraction = pc.if_else(
                pc.equal(micros, 0),
                pa.scalar("", pa.string()),
                pc.binary_join_element_wise(
                    ".", pc.utf8_lpad(pc.cast(micros, pa.string()), 6, "0"), ""
                ),
            )
            text = pc.binary_join_element_wise(whole, fraction, "Z", "")
        elif pa.types.is_date(kind):
            text = pc.strftime(col, "%Y-%m-%d")
        else:  # integer, boolean: "17", "true"
            text = pc.cast(col, pa.string())
        texts.append(text)
    return pc.binary_join_element_wise(*texts, "|")
