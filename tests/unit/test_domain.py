"""Schema, split, events and the promotion policy."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from minimlops.domain import events
from minimlops.domain.policy import decide_promotion, mcnemar
from minimlops.domain.schema import split_for, table_schema
from minimlops.services.validate import add_split
from tests.conftest import TITANIC


def test_training_schema_has_the_data_set_columns_then_pipeline_columns() -> None:
    names = [c.name for c in table_schema("training_data", TITANIC)]
    assert tuple(names[:12]) == TITANIC.column_names
    assert names[12:] == ["split", "ingestion_id", "source_uri", "ingested_at"]
    types = {c.name: c.type for c in table_schema("training_data", TITANIC)}
    assert types["PassengerId"] == "INTEGER" and types["Age"] == "FLOAT"


def test_split_is_about_70_15_15_and_the_same_in_python_arrow_and_sql() -> None:
    ids = list(range(1, 20_001))
    py = [split_for(i) for i in ids]
    arrow = add_split(pa.table({"PassengerId": pa.array(ids, pa.int64())}), TITANIC).to_pylist()
    sql = [
        r[0]
        for r in duckdb.sql(
            "SELECT CASE WHEN u < 0.70 THEN 'TRAIN' WHEN u < 0.85 THEN 'VALIDATION' ELSE 'TEST' END "
            "FROM (SELECT i, ((i * 2654435761) % 4294967296) / 4294967296.0 AS u "
            "FROM range(1, 20001) t(i)) ORDER BY i"
        ).fetchall()
    ]
    assert py == arrow == sql
    share = {s: py.count(s) / len(py) for s in ("TRAIN", "VALIDATION", "TEST")}
    assert share["TRAIN"] == pytest.approx(0.70, abs=0.01)
    assert share["VALIDATION"] == pytest.approx(0.15, abs=0.01)


def test_events_round_trip_through_the_wire_format() -> None:
    e = events.IngestionComplete(
        ingestion_id="i", table="t", rows_loaded=3, source_uri="gs://b/f", content_sha256="abc"
    )
    data, attrs = e.to_message()
    assert attrs["type"] == "IngestionComplete" and attrs["schema_version"] == "1"
    assert events.from_message(data, attrs) == e


def test_unknown_or_malformed_messages_are_refused() -> None:
    with pytest.raises(events.UnknownEventError):
        events.from_message(b"{}", {"type": "Nope"})
    with pytest.raises(events.UnknownEventError):
        events.from_message(b"not json", {"type": "RetrainRequested"})


@pytest.mark.parametrize(
    ("new", "old", "tol", "promote"),
    [
        (0.80, None, 0.0, True),
        (0.80, 0.80, 0.0, True),
        (0.81, 0.80, 0.0, True),
        (0.79, 0.80, 0.0, False),
        (0.79, 0.80, 0.02, True),
        (0.70, 0.80, 0.02, False),
    ],
)
def test_promotion_gate(new: float, old: float | None, tol: float, promote: bool) -> None:
    champion = None if old is None else {"accuracy": old, "rows": 100}
    decision = decide_promotion({"accuracy": new, "rows": 100}, champion, tolerance=tol)
    assert decision.promote is promote
    assert decision.reason


def test_a_promotion_by_a_gain_within_chance_says_so() -> None:
    """Promoted on a hair (the paired test cannot tell the two apart): the
    reason says the gain is within chance, not only "better"; a gain the
    test sees is said plainly."""
    champion = {"log_loss": 0.4, "rows": 300}
    args = {"metric": "log_loss", "direction": "min"}
    noise = {"test": "wilcoxon", "p_value": 0.917}
    hair = decide_promotion({"log_loss": 0.3999, "rows": 300}, champion, paired=noise, **args)
    assert hair.promote and "is better than champion's" in hair.reason
    assert hair.reason.endswith(
        "; a difference within chance (paired wilcoxon test, p = 0.92): "
        "as good as the champion, and newer"
    ), hair.reason
    seen = {"test": "wilcoxon", "p_value": 0.001}
    clear = decide_promotion({"log_loss": 0.3, "rows": 300}, champion, paired=seen, **args)
    assert clear.promote and "chance" not in clear.reason


def test_too_few_evaluation_rows_never_promote_a_challenger_but_a_first_model_serves() -> None:
    """A first file of a hundred rows gives ~15 VALIDATION rows: serving that
    model beats serving none, and the reason says how little it was judged on."""
    champion = {"accuracy": 0.5, "rows": 5}
    kept = decide_promotion({"accuracy": 1.0, "rows": 5}, champion)
    assert not kept.promote and kept.reason == "only 5 evaluation rows (need 20)"
    first = decide_promotion({"accuracy": 1.0, "rows": 5}, None)
    assert first.promote and "judged on only 5 evaluation rows" in first.reason
    assert decide_promotion({"rows": 0}, None).promote


def test_mcnemar_p_values_are_exact_and_stay_fast_on_big_evaluations() -> None:
    """The gate's paired test: exact on small counts, and seconds (not the
    minutes of summing big binomial coefficients) on 500,000 scored rows."""
    import math
    import time

    def pairs(b: int, c: int, same: int = 0) -> tuple[list[bool], list[bool]]:
        return [True] * b + [False] * c + [True] * same, [False] * b + [True] * c + [True] * same

    assert mcnemar(*pairs(0, 0, 5))["p_value"] == 1.0
    assert mcnemar(*pairs(0, 10)) == {
        "test": "mcnemar",
        "champion_only_right": 0,
        "challenger_only_right": 10,
        "p_value": 2 / 1024,
    }
    exact = 2 * sum(math.comb(100, i) for i in range(41)) / 2**100
    assert mcnemar(*pairs(60, 40))["p_value"] == pytest.approx(exact, rel=1e-12)
    from scipy.stats import binomtest

    started = time.perf_counter()
    big = mcnemar(*pairs(24_000, 26_000, 450_000))
    assert time.perf_counter() - started < 5  # a gate that waits minutes is broken
    assert big["p_value"] == pytest.approx(binomtest(24_000, 50_000).pvalue, rel=1e-9)
    assert mcnemar(*pairs(25_000, 25_000))["p_value"] == 1.0
