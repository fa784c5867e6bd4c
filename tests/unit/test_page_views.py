"""What the pages are sent: an explanation whose bars add up to the raw
output, and landed files shown by their path on the local backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from minimlops.generate import passengers
from minimlops.services import admin
from minimlops.services.deps import Deps, local_path
from minimlops.services.explain import Explainer
from minimlops.services.train import registry_of
from tests.unit.test_ingest import LAND, land
from tests.unit.test_services import _csv, _ingest_and_train


def test_an_explanation_adds_up_and_a_change_of_one_input_moves_its_attribution(
    fake_deps: Deps,
) -> None:
    _ingest_and_train(fake_deps, "a.csv", passengers(600, seed=4))
    registry = registry_of(fake_deps)
    model = registry.load_serving("1")
    explainer = Explainer(registry.load, fake_deps.project)
    typical = dict(model.spec["reference"])  # what the page's form starts with
    first, younger = explainer.explain("1", model, [typical, {**typical, "Age": 4.0}])
    for e in (first, younger):  # what the page draws: base, bars, raw output
        total = e["base_value"] + sum(a["attribution"] for a in e["attributions"])
        assert total == pytest.approx(e["raw_output"], abs=1e-6)
        assert e["output_space"] == "log-odds" and e["attributions"][0]["label"]
    age = {e["input"]: e["attribution"] for e in first["attributions"]}["Age"]
    assert {e["input"]: e["attribution"] for e in younger["attributions"]}["Age"] != age
    assert younger["raw_output"] != first["raw_output"]


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


def test_a_rejected_file_is_shown_where_it_was_set_aside(
    fake_deps: Deps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected file is moved to rejected/: the timeline shows it there (it
    showed the landing path, where the file no longer is), as an absolute path
    (a relative home gave one relative to the server's working directory)."""
    land(fake_deps, "bad.csv", b"PassengerId,Survived\n1,0\n")
    monkeypatch.chdir(tmp_path)
    (event,) = [
        e
        for e in admin.timeline(fake_deps, registry_of(fake_deps), files=Path("home/buckets"))
        if e["kind"] == "rejected"
    ]
    assert event["where"] == str(tmp_path / "home" / "buckets" / LAND / "rejected" / "bad.csv")
    assert event["subject"] == f"gs://{LAND}/bad.csv"
    assert "rejected/bad.csv" in {o.name for o in fake_deps.store.list(LAND, "rejected/")}


def test_a_path_under_the_home_directory_is_written_with_a_tilde(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    files = tmp_path / ".minimlops" / "buckets"
    assert local_path("gs://b/dir/x.csv", files) == str(Path("~/.minimlops/buckets/b/dir/x.csv"))
    assert local_path("gs://b/x.csv", Path("/srv/data")) == "/srv/data/b/x.csv"
    assert local_path("gs://b/x.csv", None) == "gs://b/x.csv"


def test_status_says_a_rejected_file_loaded_nothing() -> None:
    """`minimlops status` on a rejected file: "none loaded" (it said "0 rows"
    of a file of 1,047), with its bad rows when they were read."""
    import io

    from rich.console import Console

    from minimlops.entrypoints.cli.report import print_status

    def shown(ingestion: dict) -> str:
        out = io.StringIO()
        data = {"tables": {}, "champion": None, "last_ingestion": ingestion, "queues": []}
        print_status(Console(file=out, width=200, color_system=None), data)
        return out.getvalue()

    row = {"source_uri": "gs://b/x.csv", "ingested_at": "now", "message": "unknown columns"}
    assert "rejected (none loaded)" in shown({**row, "status": "rejected", "rows_loaded": 0})
    bad = {**row, "status": "rejected", "rows_loaded": 0, "rows_rejected": 6}
    assert "rejected (6 bad rows, none loaded)" in shown(bad)
    assert "loaded (1,431 rows loaded)" in shown({**row, "status": "loaded", "rows_loaded": 1431})
