"""Serving statistics: each process counts its own; /stats/serving reports all."""

from __future__ import annotations

from minimlops.entrypoints.http.stats import ServingStats


def test_merged_statistics_equal_one_process_having_seen_every_request() -> None:
    one, a, b = ServingStats(), ServingStats(), ServingStats()
    latencies = [0.0004, 0.0009, 0.0021, 0.0004, 0.0300, 0.0008, 0.0012, 0.0500]
    for i, seconds in enumerate(latencies):
        rows, ok = (i % 3) + 1, i != 5
        one.record(seconds, rows, ok)
        (a if i % 2 else b).record(seconds, rows, ok)
    merged = a.merged([b.snapshot()])
    assert merged.series() == one.series()  # p50 and p99 too
    assert (merged.requests, merged.rows, merged.errors) == (one.requests, one.rows, one.errors)
    assert merged.prometheus() == one.prometheus()
    assert a.requests == 4  # merging leaves the process's own counts alone


def test_merging_nothing_is_a_copy() -> None:
    stats = ServingStats()
    stats.record(0.001, 1, True)
    assert stats.merged([]).series() == stats.series()
