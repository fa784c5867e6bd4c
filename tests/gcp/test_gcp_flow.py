"""The whole Google Cloud path on this machine, against the emulators.

`minimlops gcp provision` creates the resources; the deployment bundle that
`minimlops gcp deploy` builds is served by functions-framework, one process per
function, as Cloud Run would. The Cloud Storage emulator publishes object
notifications; a small bridge turns each into the storage CloudEvent Eventarc
would deliver to ``ingest_data``. Pub/Sub pushes ``ingestion_complete`` to
``train_model``. Then the exercise's curl request goes to
``predictions_endpoint`` and its row is looked up in BigQuery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from minimlops.generate import write_csv
from tests.conftest import example_csv
from tests.e2e.harness import free_port, wait_until

pytestmark = pytest.mark.gcp
FUNCTIONS = ("ingest_data", "train_model", "predictions_endpoint")  # started by default
ALL_FUNCTIONS = (*FUNCTIONS, "send_alert")
EXERCISE_REQUEST = {
    "PassengerId": 892,
    "Pclass": 3,
    "Name": "Kelly, Mr. James",
    "Sex": "male",
    "Age": 34.5,
    "SibSp": 0,
    "Parch": 0,
    "Ticket": "330911",
    "Fare": 7.8292,
    "Cabin": None,
    "Embarked": "Q",
}


class Cloud:
    """Emulated project: names unique to this test, functions, the bridge."""

    def __init__(self, tmp: Path, emulators: dict[str, str]) -> None:
        self.tmp, self.suffix = tmp, uuid.uuid4().hex[:8]
        self.project = emulators["GOOGLE_CLOUD_PROJECT"]
        self.landing, self.models = f"landing-{self.suffix}", f"models-{self.suffix}"
        self.dataset = f"titanic_{self.suffix}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MINIMLOPS_")}
        self.env.update(emulators)
        self.env.update(
            {
                "MINIMLOPS_BACKEND": "gcp",
                "MINIMLOPS_LANDING_BUCKET": self.landing,
                "MINIMLOPS_MODEL_BUCKET": self.models,
                "MINIMLOPS_DATASET": self.dataset,
                "MINIMLOPS_INGESTION_TOPIC": f"ingestion_complete-{self.suffix}",
                "MINIMLOPS_RETRAIN_TOPIC": f"retrain_requested-{self.suffix}",
                "MINIMLOPS_PROMOTED_TOPIC": f"model_promoted-{self.suffix}",
                "MINIMLOPS_ALERTS_TOPIC": f"alerts-{self.suffix}",
                "MINIMLOPS_DEAD_LETTER_TOPIC": f"dead-letter-{self.suffix}",
                "MINIMLOPS_CV_FOLDS": "3",
                "MINIMLOPS_MODEL_CHECK_SECONDS": "1",
            }
        )
        self.ports = {fn: free_port() for fn in ALL_FUNCTIONS}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "minimlops", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"minimlops {args}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def start_functions(self, bundle: Path, only: tuple[str, ...] = FUNCTIONS, **env: str) -> None:
        ff = Path(sys.executable).parent / "functions-framework"
        for fn in only:
            log = open(self.tmp / f"{fn}.log", "w")  # noqa: SIM115
            self.procs[fn] = subprocess.Popen(
                [
                    str(ff),
                    f"--target={fn}",
                    f"--source={bundle / 'main.py'}",
                    "--host=127.0.0.1",
                    f"--port={self.ports[fn]}",
                ],
                # as on Cloud Run: the bundle's own copy of minimlops is imported
                env={**self.env, "PYTHONPATH": str(bundle), **env},
                cwd=bundle,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for fn in only:
            port = self.ports[fn]
            deadline = time.monotonic() + 60
            while True:
                assert self.procs[fn].poll() is None, self.logs(fn)
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"{fn} did not start: {self.logs(fn)}"
                    time.sleep(0.2)

    def bundle(self, tmp: Path) -> Path:
        """The deployment bundle `minimlops gcp deploy --dry-run` builds."""
        bundle = tmp / "bundle"
        self.cli(
            "gcp", "deploy", "--dry-run", "--gcp-project", self.project, "--bundle", str(bundle)
        )
        return bundle

    def start_send_alert(
        self, bundle: Path, sub: Any, webhook: str, secret: str, *topics: str
    ) -> None:
        """send_alert with a webhook and its key, and a push subscription on
        each topic, as Eventarc's Pub/Sub triggers make on Google Cloud."""
        self.start_functions(
            bundle,
            only=("send_alert",),
            MINIMLOPS_ALERT_WEBHOOKS=webhook,
            MINIMLOPS_ALERT_SECRET=secret,
        )
        for topic in topics:
            sub.create_subscription(
                name=sub.subscription_path(self.project, f"to-send-alert-{topic}"),
                topic=f"projects/{self.project}/topics/{topic}",
                push_config={
                    "push_endpoint": f"{self.url('send_alert')}/projects/{self.project}/topics/{topic}"
                },
            )

    def logs(self, fn: str) -> str:
        return (self.tmp / f"{fn}.log").read_text()[-4000:]

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def url(self, fn: str) -> str:
        return f"http://127.0.0.1:{self.ports[fn]}"


@pytest.fixture
def cloud(tmp_path: Path, gcp_emulators):
    c = Cloud(tmp_path, gcp_emulators)
    yield c
    c.stop()


def _clients(project: str) -> tuple[Any, Any, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, pubsub_v1, storage

    return (
        storage.Client(project=project),
        bigquery.Client(project=project, credentials=AnonymousCredentials()),
        pubsub_v1.SubscriberClient(),
    )


def _bridge(cloud: Cloud, sub: Any, subscription: str, name: str, times: int = 1) -> int:
    """Deliver the storage emulator's notification of `name` to ingest_data as a
    binary-mode CloudEvent (what Eventarc sends), `times` times in a row (a
    redelivery); returns the last HTTP status."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = sub.pull(request={"subscription": subscription, "max_messages": 50}, timeout=5)
        if resp.received_messages:
            sub.acknowledge(
                request={
                    "subscription": subscription,
                    "ack_ids": [m.ack_id for m in resp.received_messages],
                }
            )
        for m in resp.received_messages:
            attrs = m.message.attributes
            if (
                attrs.get("eventType") == "OBJECT_FINALIZE"
                and attrs.get("objectId") == name
                and attrs.get("bucketId") == cloud.landing
            ):
                obj = json.loads(m.message.data)
                event = CloudEvent(
                    {
                        "type": "google.cloud.storage.object.v1.finalized",
                        "source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
                        "subject": f"objects/{obj['name']}",
                        "id": m.message.message_id,
                        "time": obj.get("updated") or obj.get("timeCreated"),
                    },
                    obj,
                )
                headers, body = to_binary(event)
                for _ in range(times):
                    r = httpx.post(
                        cloud.url("ingest_data"), headers=headers, content=body, timeout=300
                    )
                return r.status_code
    raise AssertionError(f"no storage notification for {name}")


def test_the_exercise_flow_on_emulated_google_cloud(cloud: Cloud, tmp_path: Path) -> None:
    gcs, bq, sub = _clients(cloud.project)
    # 1. provision (twice: idempotent), with Pub/Sub pushing training topics to train_model
    out = cloud.cli("gcp", "provision", "--push-endpoint", cloud.url("train_model"))
    assert f"created  bucket        gs://{cloud.landing}" in out
    assert "created  table" in out and "train_model-ingestion_complete" in out
    again = cloud.cli("gcp", "provision", "--push-endpoint", cloud.url("train_model"))
    assert "0 created or updated" in again
    # 2. the bundle `gcp deploy` builds, served by functions-framework
    bundle = cloud.bundle(tmp_path)
    cloud.start_functions(bundle)
    probe = subprocess.run(
        [sys.executable, "-c", "import minimlops; print(minimlops.__file__)"],
        env={**cloud.env, "PYTHONPATH": str(bundle)},
        cwd=bundle,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.startswith(str(bundle)), probe.stdout
    notifications = sub.subscription_path(cloud.project, f"bridge-{cloud.suffix}")
    sub.create_subscription(
        name=notifications, topic=f"projects/{cloud.project}/topics/gcs-notifications"
    )
    # 3. a file lands; Eventarc's storage event reaches ingest_data
    data = example_csv()
    if data is None:  # outside CI, without MINIMLOPS_EXAMPLE_DATA: the data set's shape
        data = tmp_path / "titanic.csv"
        write_csv(data, 891, seed=3)
    landing = gcs.bucket(cloud.landing)
    landing.blob("titanic.csv").upload_from_filename(str(data), content_type="text/csv")
    # delivered twice (at-least-once): loaded once, ingestion_complete published again
    assert _bridge(cloud, sub, notifications, "titanic.csv", times=2) == 200, cloud.logs(
        "ingest_data"
    )
    table = f"{cloud.project}.{cloud.dataset}"

    def count(sql: str) -> int:
        return int(next(iter(bq.query(sql).result()))[0])

    rows = count(f"SELECT COUNT(*) FROM `{table}.training_data`")
    assert rows == 891
    ledger = list(bq.query(f"SELECT status, rows_loaded FROM `{table}.ingestion_ledger`").result())
    assert [(r.status, r.rows_loaded) for r in ledger] == [("loaded", 891)]
    assert not list(landing.list_blobs(prefix="staging/")), "the staged load file is cleaned up"
    # 4. Pub/Sub pushes ingestion_complete to train_model: a champion appears
    models = gcs.bucket(cloud.models)
    pointer = wait_until(
        lambda: models.get_blob("models/titanic/champion.json"),
        180,
        lambda: "a champion model:\n" + cloud.logs("train_model"),
    )
    version = json.loads(pointer.download_as_bytes())["version"]
    # the redelivered ingestion_complete reached train_model too: no second version
    wait_until(
        lambda: "already handled by version" in cloud.logs("train_model"),
        60,
        lambda: "the second ingestion_complete to be recognised:\n" + cloud.logs("train_model"),
    )
    assert [
        b.name
        for b in models.list_blobs(prefix="models/titanic/")
        if b.name.endswith("metadata.json")
    ] == [f"models/titanic/{version}/metadata.json"]
    # 5. the exercise's curl request to the function's URL
    r = wait_until(
        lambda: (
            (
                x := httpx.post(
                    cloud.url("predictions_endpoint"), json=EXERCISE_REQUEST, timeout=60
                )
            ).status_code
            == 200
            and x
        ),
        30,
        lambda: "predictions_endpoint:\n" + cloud.logs("predictions_endpoint"),
    )
    answer = r.json()
    assert answer["prediction"] in (0, 1) and 0 <= answer["probability"] <= 1
    assert answer["model_version"] == version
    from google.cloud import bigquery

    logged = list(
        bq.query(
            f"SELECT uuid, model_version, Sex, Age FROM `{table}.predictions_data` WHERE uuid = @u",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[bigquery.ScalarQueryParameter("u", "STRING", answer["uuid"])]
            ),
        ).result()
    )
    assert [(x.model_version, x.Sex, x.Age) for x in logged] == [(version, "male", 34.5)]
    batch = httpx.post(
        cloud.url("predictions_endpoint") + "/predict", json=[EXERCISE_REQUEST] * 3, timeout=60
    )
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 3
    bad = httpx.post(cloud.url("predictions_endpoint"), json={**EXERCISE_REQUEST, "Age": -3})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "Age"
    # 6. the same content again, under another name: nothing new is loaded
    landing.blob("copy-of-titanic.csv").upload_from_filename(str(data), content_type="text/csv")
    assert _bridge(cloud, sub, notifications, "copy-of-titanic.csv") == 200
    assert count(f"SELECT COUNT(*) FROM `{table}.training_data`") == 891
    statuses = sorted(
        r.status for r in bq.query(f"SELECT status FROM `{table}.ingestion_ledger`").result()
    )
    assert statuses == ["duplicate", "loaded"]
    # 7. a bad file is set aside with a report; the pipeline still serves
    landing.blob("broken.csv").upload_from_string(
        b"PassengerId;Survived\n1;0\n", content_type="text/csv"
    )
    assert _bridge(cloud, sub, notifications, "broken.csv") == 200
    assert landing.get_blob("broken.csv") is None
    assert landing.get_blob("rejected/broken.csv") is not None
    report = json.loads(landing.blob("rejected/broken.csv.report.json").download_as_bytes())
    assert report["file_errors"], report
    assert count(f"SELECT COUNT(*) FROM `{table}.training_data`") == 891
    assert httpx.post(cloud.url("predictions_endpoint"), json=EXERCISE_REQUEST).status_code == 200
    # 8. the command line works against the gcp backend (in-process, no local runtime)
    listed = json.loads(cloud.cli("models", "list", "--json"))
    assert version in json.dumps(listed)
    status = json.loads(cloud.cli("status", "--json"))
    assert status["tables"]["training_data"] == 891
    assert status["champion"]["version"] == version
    assert status["last_ingestion"]["status"] == "rejected"  # broken.csv, the newest
    landed = cloud.cli("ingest", str(data))
    assert f"gs://{cloud.landing}/" in landed and "ingest_data runs on" in landed
    assert landing.get_blob(Path(data).name) is not None


def test_a_functions_alert_reaches_a_webhook_through_pubsub_and_is_retried(
    cloud: Cloud, tmp_path: Path
) -> None:
    """ingest_data rejects a file and publishes file.rejected; Pub/Sub pushes it
    to send_alert, which holds the webhook and the key (from Secret Manager on
    Google Cloud, from its environment here); a receiver that fails at first
    gets it on a later delivery, signed, with the same id."""
    from minimlops.domain import alerts
    from tests.e2e.test_alerts import SECRET, Receiver

    receiver = Receiver()
    receiver.status = 503
    try:
        _, _, sub = _clients(cloud.project)
        cloud.cli("gcp", "provision")
        bundle = cloud.bundle(tmp_path)
        cloud.start_functions(bundle, only=("ingest_data",))
        topic = cloud.env["MINIMLOPS_ALERTS_TOPIC"]
        cloud.start_send_alert(bundle, sub, receiver.url, SECRET, topic)
        notifications = sub.subscription_path(cloud.project, f"bridge-{cloud.suffix}")
        sub.create_subscription(
            name=notifications, topic=f"projects/{cloud.project}/topics/gcs-notifications"
        )
        from google.cloud import storage

        landing = storage.Client(project=cloud.project).bucket(cloud.landing)
        landing.blob("broken.csv").upload_from_string(b"a;b\n1;2\n", content_type="text/csv")
        assert _bridge(cloud, sub, notifications, "broken.csv") == 200, cloud.logs("ingest_data")
        wait_until(lambda: receiver.tries, 60, lambda: "a try:\n" + cloud.logs("send_alert"))
        receiver.status = 200
        wait_until(lambda: receiver.got, 120, lambda: "a redelivery:\n" + cloud.logs("send_alert"))
    finally:
        receiver.close()
    (got,) = receiver.got[:1]
    doc = got["doc"]
    assert doc["type"] == "file.rejected" and doc["details"]["file"].endswith("broken.csv")
    assert alerts.verify(SECRET, got["signature"], got["body"])
    assert {i for i, _ in receiver.tries} == {doc["id"]}


def test_a_dead_lettered_message_raises_an_alert_and_a_dead_lettered_alert_none(
    cloud: Cloud, tmp_path: Path
) -> None:
    """A message that keeps failing goes to the dead-letter topic (Pub/Sub
    adds its source subscription and delivery count as
    CloudPubSubDeadLetterSource* attributes,
    https://cloud.google.com/pubsub/docs/handling-failures); send_alert's second
    trigger turns it into a signed message.dead_lettered alert. An alert that is dead-lettered
    raises none (it would loop through the webhook that failed)."""
    from google.cloud import pubsub_v1

    from minimlops.domain import alerts
    from minimlops.domain.events import AlertRaised, IngestionComplete
    from tests.e2e.test_alerts import SECRET, Receiver

    receiver = Receiver()
    try:
        _, _, sub = _clients(cloud.project)
        cloud.cli("gcp", "provision")
        p = cloud.project
        dead_topic = cloud.env["MINIMLOPS_DEAD_LETTER_TOPIC"]
        alerts_topic = cloud.env["MINIMLOPS_ALERTS_TOPIC"]
        cloud.start_send_alert(
            cloud.bundle(tmp_path), sub, receiver.url, SECRET, alerts_topic, dead_topic
        )
        # a consumer that always fails: nothing listens on its push endpoint
        source = f"eventarc-train-model-{cloud.suffix}"
        ingestion = cloud.env["MINIMLOPS_INGESTION_TOPIC"]
        sub.create_subscription(
            request={
                "name": sub.subscription_path(p, source),
                "topic": f"projects/{p}/topics/{ingestion}",
                "push_config": {"push_endpoint": f"http://127.0.0.1:{free_port()}/"},
                "dead_letter_policy": {
                    "dead_letter_topic": f"projects/{p}/topics/{dead_topic}",
                    "max_delivery_attempts": 5,
                },
            }
        )
        publisher = pubsub_v1.PublisherClient()
        # first, an alert set aside after failing, as Pub/Sub forwards it: no
        # alert about it (handled long before the dead letter below arrives)
        alert = AlertRaised(
            alert_id="a1",
            kind="file.rejected",
            time="",
            project="",
            summary="",
            details={},
            destination="",
        )
        body, alert_attrs = alert.to_message()
        forwarded = {
            **alert_attrs,
            "CloudPubSubDeadLetterSourceSubscription": "eventarc-send-alert-x",
        }
        publisher.publish(f"projects/{p}/topics/{dead_topic}", body, **forwarded).result(30)
        event = IngestionComplete(
            ingestion_id="i1",
            table="t",
            rows_loaded=3,
            source_uri="gs://x/y.csv",
            content_sha256="",
        )
        data, attrs = event.to_message()
        publisher.publish(f"projects/{p}/topics/{ingestion}", data, **attrs).result(30)
        got = lambda: [g for g in receiver.got if g["doc"]["type"] == "message.dead_lettered"]  # noqa: E731
        wait_until(got, 120, lambda: "a dead-letter alert:\n" + cloud.logs("send_alert"))
        # Pub/Sub dead-letters on a best effort basis, maybe twice: the same alert id
        first = got()[0]["doc"]["details"]
        again = {
            **attrs,
            "CloudPubSubDeadLetterSourceSubscription": f"projects/{p}/subscriptions/{source}",
            "CloudPubSubDeadLetterSourceDeliveryCount": "6",
            "CloudPubSubDeadLetterSourceTopicPublishTime": first["published"],
        }
        publisher.publish(f"projects/{p}/topics/{dead_topic}", data, **again).result(30)
        wait_until(lambda: len(got()) > 1, 60, lambda: cloud.logs("send_alert"))
    finally:
        receiver.close()
    one = got()[0]
    assert len({g["doc"]["id"] for g in got()}) == 1, got()
    doc = one["doc"]
    assert alerts.verify(SECRET, one["signature"], one["body"])
    assert (
        doc["details"]["subscription"] == source and doc["details"]["type"] == "IngestionComplete"
    )
    assert int(doc["details"]["deliveries"]) >= 5
    assert doc["details"]["event_id"] == event.event_id
    assert [k for k in receiver.kinds() if k != "message.dead_lettered"] == []


def test_a_multiclass_project_with_string_keys_on_emulated_google_cloud(
    cloud: Cloud, tmp_path: Path
) -> None:
    """The same path for the wine example: the project is bundled, its tables
    provisioned, its string keys split and sampled by BigQuery's MD5."""
    from minimlops.example_data import bundled

    gcs, bq, sub = _clients(cloud.project)
    cloud.env["MINIMLOPS_PROJECT"] = "wine"
    cloud.env["MINIMLOPS_DATASET"] = f"wine_{cloud.suffix}"
    out = cloud.cli("gcp", "provision", "--push-endpoint", cloud.url("train_model"))
    assert f"{cloud.project}.wine_{cloud.suffix}" in out
    bundle = tmp_path / "bundle"
    deployed = cloud.cli(
        "gcp", "deploy", "--dry-run", "--gcp-project", cloud.project, "--bundle", str(bundle)
    )
    assert "project wine: multiclass cultivar" in deployed
    assert (
        bundle / "project" / "project.toml"
    ).is_file() and "MINIMLOPS_PROJECT=project" in deployed
    cloud.env["MINIMLOPS_PROJECT"] = "project"  # as deployed: the bundle's copy
    cloud.start_functions(bundle)
    notifications = sub.subscription_path(cloud.project, f"bridge-{cloud.suffix}")
    sub.create_subscription(
        name=notifications, topic=f"projects/{cloud.project}/topics/gcs-notifications"
    )
    data = bundled("wine", tmp_path)
    landing = gcs.bucket(cloud.landing)
    landing.blob("wine.csv").upload_from_filename(str(data), content_type="text/csv")
    assert _bridge(cloud, sub, notifications, "wine.csv") == 200, cloud.logs("ingest_data")
    table = f"{cloud.project}.wine_{cloud.suffix}"
    splits = {
        r.split: r.n
        for r in bq.query(
            f"SELECT split, COUNT(*) AS n FROM `{table}.training_data` GROUP BY split"
        ).result()
    }
    from minimlops.domain.schema import split_for

    keys = [f"wine-{i:03d}" for i in range(1, 179)]
    assert splits == {
        s: sum(split_for(k) == s for k in keys) for s in ("TRAIN", "VALIDATION", "TEST")
    }
    models = gcs.bucket(cloud.models)
    pointer = wait_until(
        lambda: models.get_blob("models/wine/champion.json"),
        180,
        lambda: "a champion model:\n" + cloud.logs("train_model"),
    )
    version = json.loads(pointer.download_as_bytes())["version"]
    row = {
        "alcohol": 13.2,
        "malic_acid": 1.78,
        "ash": 2.14,
        "alcalinity_of_ash": 11.2,
        "magnesium": 100,
        "total_phenols": 2.65,
        "flavanoids": 2.76,
        "nonflavanoid_phenols": 0.26,
        "proanthocyanins": 1.28,
        "color_intensity": 4.38,
        "hue": 1.05,
        "od280_od315": 3.4,
        "proline": 1050,
    }
    r = wait_until(
        lambda: (
            (x := httpx.post(cloud.url("predictions_endpoint"), json=row, timeout=60)).status_code
            == 200
            and x
        ),
        30,
        lambda: "predictions_endpoint:\n" + cloud.logs("predictions_endpoint"),
    )
    answer = r.json()
    assert answer["prediction"] in ("cultivar_1", "cultivar_2", "cultivar_3")
    assert set(answer["probabilities"]) == {"cultivar_1", "cultivar_2", "cultivar_3"}
    assert answer["model_version"] == version
    from google.cloud import bigquery

    logged = list(
        bq.query(
            f"SELECT prediction, probabilities FROM `{table}.predictions_data` WHERE uuid = @u",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[bigquery.ScalarQueryParameter("u", "STRING", answer["uuid"])]
            ),
        ).result()
    )
    assert [(x.prediction, json.loads(x.probabilities)) for x in logged] == [
        (answer["prediction"], answer["probabilities"])
    ]


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_large_file_streams_through_ingest_data_without_local_disk(
    cloud: Cloud, tmp_path: Path
) -> None:
    """On Cloud Run the disk is memory (https://cloud.google.com/run/docs/container-contract#filesystem):
    ingest_data must not stage a file on it. The function gets an empty
    TMPDIR, which must stay empty, and its peak memory may not grow with the
    file: a file ten times bigger adds less than a tenth of its size."""
    gcs, bq, sub = _clients(cloud.project)
    cloud.cli("gcp", "provision")
    bundle = cloud.bundle(tmp_path)
    scratch = tmp_path / "function-tmp"
    scratch.mkdir()
    cloud.start_functions(bundle, only=("ingest_data",), TMPDIR=str(scratch))
    notifications = sub.subscription_path(cloud.project, f"bridge-{cloud.suffix}")
    sub.create_subscription(
        name=notifications, topic=f"projects/{cloud.project}/topics/gcs-notifications"
    )
    landing = gcs.bucket(cloud.landing)
    table = f"`{cloud.project}.{cloud.dataset}.training_data`"
    peaks, sizes, loaded = [], [], 0
    big = int(os.environ.get("MINIMLOPS_TEST_BIG_ROWS", "400000"))  # bench/results: 4,000,000
    for rows, seed in ((big // 10, 11), (big, 12)):
        data = tmp_path / f"passengers-{rows}.csv"
        write_csv(data, rows, seed=seed)
        landing.blob(data.name).upload_from_filename(str(data), content_type="text/csv")
        assert _bridge(cloud, sub, notifications, data.name) == 200, cloud.logs("ingest_data")
        loaded += rows
        assert int(next(iter(bq.query(f"SELECT COUNT(*) FROM {table}").result()))[0]) == loaded
        peaks.append(_peak_rss_mib(cloud.procs["ingest_data"].pid))
        sizes.append(data.stat().st_size / 2**20)
        assert not list(scratch.iterdir()), "ingest_data wrote to its (memory-backed) disk"
    assert not list(landing.list_blobs(prefix="staging/")), "staged files are cleaned up"
    growth = peaks[1] - peaks[0]
    print(
        f"files {sizes[0]:.0f} and {sizes[1]:.0f} MiB: peak RSS {peaks[0]:.0f} -> {peaks[1]:.0f} MiB"
    )
    assert growth < (sizes[1] - sizes[0]) / 10 + 16, (sizes, peaks)
