"""``bench --quality``'s split data sets: a time-ordered one whose held-out
rows are the newest, a grouped one whose held-out rows are patients never
seen; every strategy compared is fitted on the rows before them."""

from __future__ import annotations

import datetime as dt

from minimlops_bench import quality


def test_the_time_ordered_set_spans_years_and_holds_out_its_newest_rows() -> None:
    ss = quality.demand_over_time(600)
    project = ss.project
    assert project.column("sold_on").type == "date" and "sold_on" in project.features
    assert project.split.strategy == "time" and project.split.column == "sold_on"
    days = ss.table.column("sold_on").to_pylist()
    assert all(isinstance(d, dt.date) for d in days)
    assert (max(days) - min(days)).days > 2 * 365  # seasons repeat: a year is learnable
    assert len({d.isocalendar()[:2] for d in days}) > 100  # many weeks, several rows each
    held, parts = quality.split_parts(ss)
    assert set(parts) == {"random", "time"}
    newest = min(held.column("sold_on").to_pylist())
    assert 0.1 * ss.table.num_rows < held.num_rows < 0.2 * ss.table.num_rows
    for _spec, train, valid in parts.values():
        before = train.column("sold_on").to_pylist() + valid.column("sold_on").to_pylist()
        assert max(before) < newest  # every strategy learns and validates on older rows
        assert train.num_rows + valid.num_rows + held.num_rows == ss.table.num_rows
    _, train, valid = parts["time"]
    assert max(train.column("sold_on").to_pylist()) < min(valid.column("sold_on").to_pylist())

    def weeks(t):
        return {d.isocalendar()[:2] for d in t.column("sold_on").to_pylist()}

    _, train, valid = parts["random"]
    assert len(weeks(train) & weeks(valid)) > len(weeks(valid)) / 2  # the same weeks both sides


def test_the_grouped_set_repeats_its_patients_and_holds_out_unseen_ones() -> None:
    ss = quality.patient_visits(600)
    project = ss.project
    assert project.split.strategy == "group" and project.split.column == "patient_id"
    assert "patient_id" not in project.features  # recognised through their traits, if at all
    rows = ss.table.to_pylist()
    visits: dict[str, list[dict]] = {}
    for r in rows:
        visits.setdefault(r["patient_id"], []).append(r)
    assert len(visits) <= len(rows) / 10  # about 15 visits each
    for seen in visits.values():  # a patient's traits never change
        assert len({(r["age"], r["bmi"], r["sex"], r["region"]) for r in seen}) == 1
    held, parts = quality.split_parts(ss)
    assert set(parts) == {"random", "group"}
    unseen = set(held.column("patient_id").to_pylist())
    assert unseen and held.num_rows > 0

    def patients(t):
        return set(t.column("patient_id").to_pylist())

    for _spec, train, valid in parts.values():
        assert not (patients(train) | patients(valid)) & unseen
    _, train, valid = parts["group"]
    assert not patients(train) & patients(valid)
    _, train, valid = parts["random"]
    assert patients(valid) <= patients(train)  # a random split sees them all in TRAIN


def test_the_report_without_splits_is_as_before() -> None:
    report = {"machine": "m", "smoke": True, "data_sets": []}
    assert quality.SPLITS_TITLE not in quality.markdown(report)
    assert quality.SPLITS_TITLE not in quality.markdown({**report, "splits": []})
