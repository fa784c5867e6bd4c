"""The CloudEvents Google Cloud delivers, in binary and structured mode,
through the functions as deployed (functions-framework serving the bundle's
entry points), onto the local backend.

The payloads have the shape of Google's published samples
(https://github.com/googleapis/google-cloudevents, testdata of
google.events.cloud.storage.v1 and google.events.cloud.pubsub.v1), and every
one is parsed first by Google's own event types (the `google-events`
package) with unknown fields refused, so a field that a real event does not
carry cannot slip into these tests.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from google.events.cloud.pubsub_v1 import MessagePublishedData
from google.events.cloud.storage_v1 import StorageObjectData

from minimlops.bootstrap import build
from minimlops.config import Settings
from minimlops.domain.events import IngestionComplete
from minimlops.generate import write_csv

BUCKET = "my-data-landing-zone"
GENERATION = "1733389200123456"  # Cloud Storage's are int64 (ingestion reads the object's own)


def storage_event(name: str, size: int, generation: str) -> CloudEvent:
    """google.cloud.storage.object.v1.finalized, as Eventarc sends it."""
    data = {
        "kind": "storage#object",
        "id": f"{BUCKET}/{name}/{generation}",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{BUCKET}/o/{name}",
        "name": name,
        "bucket": BUCKET,
        "generation": generation,
        "metageneration": "1",
        "contentType": "text/csv",
        "timeCreated": "2026-12-05T09:00:00.000Z",
        "updated": "2026-12-05T09:00:00.000Z",
        "storageClass": "STANDARD",
        "timeStorageClassUpdated": "2026-12-05T09:00:00.000Z",
        "size": str(size),
        "md5Hash": "Z2Y5Y2E4ZWNmNGQ4NGIzYQ==",
        "mediaLink": f"https://storage.googleapis.com/download/storage/v1/b/{BUCKET}/o/{name}"
        f"?generation={generation}&alt=media",
        "crc32c": "xaQjqw==",
        "etag": "CMi3yqG2+/UCEAE=",
    }
    StorageObjectData.from_json(json.dumps(data), ignore_unknown_fields=False)
    return CloudEvent(
        {
            "specversion": "1.0",
            "type": "google.cloud.storage.object.v1.finalized",
            "source": f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
            "subject": f"objects/{name}",
            "id": "8915736381484018",
            "time": "2026-12-05T09:00:00.000Z",
            "datacontenttype": "application/json",
        },
        data,
    )


def pubsub_event(body: bytes, attributes: dict[str, str]) -> CloudEvent:
    """google.cloud.pubsub.topic.v1.messagePublished, as Eventarc sends it."""
    data = {
        "message": {
            "attributes": attributes,
            "data": base64.b64encode(body).decode(),
            "messageId": "2070443601311540",
            "publishTime": "2026-12-05T09:00:01.000Z",
        },
        "subscription": "projects/acme-ml/subscriptions/eventarc-europe-west3-train-model-sub-042",
    }
    MessagePublishedData.from_json(json.dumps(data), ignore_unknown_fields=False)
    return CloudEvent(
        {
            "specversion": "1.0",
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/acme-ml/topics/ingestion_complete",
            "id": "2070443601311540",
            "time": "2026-12-05T09:00:01.000Z",
            "datacontenttype": "application/json",
        },
        data,
    )


@pytest.fixture
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The bundle's entry points, served by functions-framework (as on Cloud
    Run), over an App on the local backend."""
    import functions_framework

    from minimlops.entrypoints.gcp import functions

    settings = Settings.from_env({}, home=tmp_path / "home", cv_folds=3, training_budget=5.0)
    app = build(settings)
    monkeypatch.setitem(functions._state, "app", app)
    main = tmp_path / "main.py"
    main.write_text(
        "from minimlops.entrypoints.gcp.functions import ingest_data, train_model  # noqa\n"
    )

    def client(target: str) -> Any:
        return functions_framework.create_app(target, str(main)).test_client()

    yield app, client
    app.close()


def _post(client: Any, event: CloudEvent, mode: str) -> Any:
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return client.post("/", headers=headers, data=body)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_storage_event_reaches_ingest_data_and_loads_the_file(
    deployed: Any, tmp_path: Path, mode: str
) -> None:
    app, client = deployed
    csv = tmp_path / "passengers.csv"
    write_csv(csv, 120, seed=5)
    info = app.deps.store.write_file(BUCKET, csv.name, csv)
    r = _post(client("ingest_data"), storage_event(csv.name, info.size, GENERATION), mode)
    assert r.status_code == 200, r.data
    ledger = app.deps.warehouse.ledger(source_uri=f"gs://{BUCKET}/{csv.name}")
    assert [(x["status"], x["rows_loaded"]) for x in ledger] == [("loaded", 120)]
    again = _post(client("ingest_data"), storage_event(csv.name, info.size, GENERATION), mode)
    assert again.status_code == 200  # a redelivery loads nothing more
    assert app.deps.warehouse.counts()["training_data"] == 120


def test_a_pubsub_event_reaches_train_model_in_both_modes(deployed: Any, tmp_path: Path) -> None:
    app, client = deployed
    csv = tmp_path / "passengers.csv"
    write_csv(csv, 300, seed=6)
    info = app.deps.store.write_file(BUCKET, csv.name, csv)
    assert (
        _post(
            client("ingest_data"), storage_event(csv.name, info.size, GENERATION), "binary"
        ).status_code
        == 200
    )
    row = app.deps.warehouse.ledger(source_uri=f"gs://{BUCKET}/{csv.name}")[0]
    done = IngestionComplete(
        ingestion_id=row["ingestion_id"],
        table="training_data",
        rows_loaded=row["rows_loaded"],
        source_uri=row["source_uri"],
        content_sha256=row["content_sha256"],
    )
    body, attributes = done.to_message()
    train = client("train_model")
    assert _post(train, pubsub_event(body, attributes), "binary").status_code == 200
    versions = app.registry.versions()
    assert len(versions) == 1 and app.registry.champion() is not None
    # the same message again, structured: decoded to the same event, trained once
    assert _post(train, pubsub_event(body, attributes), "structured").status_code == 200
    assert len(app.registry.versions()) == 1


def test_an_undecodable_message_is_acknowledged_not_retried_forever(deployed: Any) -> None:
    _, client = deployed
    r = _post(client("train_model"), pubsub_event(b"not json", {"type": "Nonsense"}), "binary")
    assert r.status_code == 200
