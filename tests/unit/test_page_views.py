"""What the pages are sent: an explanation that says when a row is the
typical row, and landed files shown by their path on the local backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from minimlops.generate import passengers
from minimlops.services import admin
from minimlops.services.deps import Deps
from minimlops.services.explain import explain, same_value
from minimlops.services.train import registry_of
from tests.unit.test_ingest import LAND, land
from tests.unit.test_services import _csv, _ingest_and_train


def test_the_typical_row_is_said_to_be_typical_and_a_change_moves_only_its_input(
    fake_deps: Deps,
) -> None:
    _ingest_and_train(fake_deps, "a.csv", passengers(600, seed=4))
    model = registry_of(fake_deps).load_serving("1")
    typical = dict(model.spec["reference"])  # what the page's form starts with
    result = explain(model, typical, fake_deps.project)
    assert result["typical_row"] and all(
        e["at_typical"] and e["effect"] == 0 for e in result["effects"]
    )
    younger = explain(model, {**typical, "Age": 4.0}, fake_deps.project)
    assert not younger["typical_row"]
    (moved,) = [e for e in younger["effects"] if not e["at_typical"]]
    assert moved["input"] == "Age" and moved["effect"] != 0
    assert all(e["effect"] == 0 for e in younger["effects"] if e["at_typical"])


@pytest.mark.parametrize(
    ("value", "typical", "same"),
    [
        (28, 28.0, True),
        (14.4271, 14.4271, True),
        (0.1 + 0.2, 0.3, True),
        (28.5, 28.0, False),
        (None, None, True),
        (None, 28.0, False),
        (0, None, False),
        ("S", "S", True),
        ("S", "C", False),
        (True, True, True),
        (False, True, False),
    ],
)
def test_same_value_reads_numbers_as_numbers(value: object, typical: object, same: bool) -> None:
    assert same_value(value, typical) is same


def test_a_landed_file_is_shown_by_its_path_and_keeps_its_uri_as_id(
    fake_deps: Deps, tmp_path: Path
) -> None:
    data = _csv(passengers(50, seed=1))
    land(fake_deps, "a.csv", data)
    land(fake_deps, "copy.csv", data)  # the same bytes: a duplicate, whose message names a.csv
    files = tmp_path / "buckets"
    events = {
        e["subject"]: e
        for e in admin.timeline(fake_deps, registry_of(fake_deps), files=files)
        if e["kind"] in ("ingested", "duplicate")
    }
    first, copy = events[f"gs://{LAND}/a.csv"], events[f"gs://{LAND}/copy.csv"]
    assert first["where"] == str(files / LAND / "a.csv")
    assert copy["kind"] == "duplicate" and str(files / LAND / "a.csv") in copy["detail"]
    assert "gs://" not in copy["detail"]
    # the ledger, which makes a file load once, still keys by the URI
    assert {r["source_uri"] for r in fake_deps.warehouse.ledger()} == set(events)
    plain = {
        e["subject"]: e
        for e in admin.timeline(fake_deps, registry_of(fake_deps))
        if e["kind"] in ("ingested", "duplicate")
    }
    assert plain[f"gs://{LAND}/a.csv"]["where"] == f"gs://{LAND}/a.csv"  # Google Cloud: the URI
    assert f"gs://{LAND}/a.csv" in plain[f"gs://{LAND}/copy.csv"]["detail"]


def test_a_path_under_the_home_directory_is_written_with_a_tilde(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    files = tmp_path / ".minimlops" / "buckets"
    assert admin.local_path("gs://b/dir/x.csv", files) == str(
        Path("~/.minimlops/buckets/b/dir/x.csv")
    )
    assert admin.local_path("gs://b/x.csv", Path("/srv/data")) == "/srv/data/b/x.csv"
    assert admin.local_path("gs://b/x.csv", None) == "gs://b/x.csv"
