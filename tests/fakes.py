"""In-memory fakes of the three ports, with real behaviour (no mocks).

They pass the same contract suite as the adapters (tests/contract), so unit
tests of the services on them mean something.
"""

from __future__ import annotations

import io
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

import numpy as np
import pyarrow as pa

from minimlops.domain.schema import sample_rank
from minimlops.domain.splits import Split, cutoffs_from_counts
from minimlops.errors import ConflictError, QueryError
from minimlops.ports import DataSummary, KeySpec, Message, ObjectInfo
from minimlops.services.tables import ARROW_TYPES

_gen = itertools.count(1)


class InMemoryObjectStore:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str, float]] = {}

    def write_bytes(
        self, bucket: str, name: str, data: bytes, *, if_generation_match: str | None = None
    ) -> ObjectInfo:
        if if_generation_match is not None:
            current = self.stat(bucket, name)
            actual = current.generation if current else "0"
            if actual != if_generation_match:
                raise ConflictError(f"{name}: generation {actual} != {if_generation_match}")
        self.objects[(bucket, name)] = (bytes(data), str(next(_gen)), time.time())
        return self.stat(bucket, name)  # type: ignore[return-value]

    def read_bytes(self, bucket: str, name: str) -> bytes:
        try:
            return self.objects[(bucket, name)][0]
        except KeyError:
            raise FileNotFoundError(name) from None

    def open(self, bucket: str, name: str) -> IO[bytes]:
        return io.BytesIO(self.read_bytes(bucket, name))

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        if (bucket, name) not in self.objects:
            return None
        data, gen, updated = self.objects[(bucket, name)]
        return ObjectInfo(bucket, name, gen, len(data), updated)

    def list(self, bucket: str, prefix: str = "") -> list[ObjectInfo]:
        names = sorted(n for b, n in self.objects if b == bucket and n.startswith(prefix))
        return [self.stat(bucket, n) for n in names]  # type: ignore[misc]

    def move(self, bucket: str, name: str, new_name: str) -> ObjectInfo:
        data = self.read_bytes(bucket, name)
        del self.objects[(bucket, name)]
        return self.write_bytes(bucket, new_name, data)

    def delete(self, bucket: str, name: str) -> None:
        self.objects.pop((bucket, name), None)


class InMemoryWarehouse:
    def __init__(
        self,
        schemas: Mapping[str, Any],
        ledger_table: str = "ingestion_ledger",
        key: KeySpec | None = None,
    ) -> None:
        self.schemas, self.ledger_table = dict(schemas), ledger_table
        self.spec = key or KeySpec()
        self.key, self.target = self.spec.key, self.spec.target
        self.tables: dict[str, list[dict[str, Any]]] = {t: [] for t in self.schemas}
        self.fail_next_append: Exception | None = None

    def _schema(self, table: str) -> pa.Schema:
        return pa.schema(
            [
                pa.field(c.name, ARROW_TYPES[c.type], nullable=not c.required)
                for c in self.schemas[table]
            ]
        )

    def ensure_tables(self) -> None:
        for t in self.schemas:
            self.tables.setdefault(t, [])

    def load(
        self, table: str, batches: Iterable[pa.RecordBatch], ledger_row: Mapping[str, Any]
    ) -> int:
        staged = [r for b in batches for r in b.to_pylist()]  # raises -> nothing kept
        if any(
            r["content_sha256"] == ledger_row["content_sha256"] and r["status"] == "loaded"
            for r in self.tables[self.ledger_table]
        ):
            raise ConflictError("this content was loaded by a concurrent delivery")
        self.tables[table].extend(staged)
        self.tables[self.ledger_table].append(dict(ledger_row, rows_loaded=len(staged)))
        return len(staged)

    def append(self, table: str, rows: pa.Table) -> None:
        if self.fail_next_append is not None:
            exc, self.fail_next_append = self.fail_next_append, None
            raise exc
        self.tables[table].extend(rows.to_pylist())

    def ledger(
        self, *, content_sha256: str | None = None, source_uri: str | None = None
    ) -> list[dict[str, Any]]:
        rows = [
            r
            for r in self.tables[self.ledger_table]
            if (content_sha256 is None or r["content_sha256"] == content_sha256)
            and (source_uri is None or r["source_uri"] == source_uri)
        ]
        return sorted(rows, key=lambda r: (r["ingested_at"], r["ingestion_id"]), reverse=True)

    def _newest(
        self, table: str, ingestion_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        newest: dict[Any, dict[str, Any]] = {}
        for r in self.tables[table]:
            if ingestion_ids is not None and r["ingestion_id"] not in ingestion_ids:
                continue
            old = newest.get(r[self.key])
            if old is None or (r["ingested_at"], r["ingestion_id"]) >= (
                old["ingested_at"],
                old["ingestion_id"],
            ):
                newest[r[self.key]] = r
        return [newest[k] for k in sorted(newest)]

    def _split(self, r: dict[str, Any], split: Split | None) -> str:
        return r["split"] if split is None else split.of_row(r, self.key)

    def latest_summary(
        self,
        table: str,
        split: Split | None = None,
        *,
        ingestion_ids: Sequence[str] | None = None,
    ) -> DataSummary:
        return DataSummary.of_counts(
            (self._split(r, split), r["ingestion_id"], 1)
            for r in self._newest(table, ingestion_ids)
        )

    def time_cutoffs(
        self,
        table: str,
        column: str,
        marks: tuple[float, float],
        *,
        ingestion_ids: Sequence[str] | None = None,
    ) -> tuple[Any, Any] | None:
        counts = Counter(
            r[column] for r in self._newest(table, ingestion_ids) if r[column] is not None
        )
        return cutoffs_from_counts(sorted(counts.items()), marks)

    def latest_rows(
        self,
        table: str,
        *,
        ingestion_ids: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        per_split: int | None = None,
        split: Split | None = None,
    ) -> pa.Table:
        rows = [{**r, "split": self._split(r, split)} for r in self._newest(table, ingestion_ids)]
        rows = [r for r in rows if splits is None or r["split"] in splits]
        if per_split is not None:
            ranked = sorted(rows, key=lambda r: (sample_rank(r[self.key]), r[self.key]))
            taken: Counter[str] = Counter()
            rows = []
            for r in ranked:
                taken[r["split"]] += 1
                if taken[r["split"]] <= per_split:
                    rows.append(r)
            rows.sort(key=lambda r: r[self.key])
        return pa.Table.from_pylist(rows, schema=self._schema(table))

    def counts(self) -> dict[str, int]:
        return {t: len(rows) for t, rows in self.tables.items()}

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        raise QueryError("the in-memory warehouse does not run SQL")

    def read(self, table: str) -> pa.Table:
        return pa.Table.from_pylist(self.tables[table], schema=self._schema(table))

    def labelled_predictions(
        self,
        predictions: str,
        feedback: str,
        limit: int | None = None,
        landed_in: str | None = None,
    ) -> pa.Table:
        labels: dict[str, tuple[Any, Any, Any]] = {}  # uuid -> (when, label, its key)
        preds = self.tables[predictions]
        by_pid: dict[Any, list[str]] = {}  # a file's label goes to every prediction of its key
        for p in preds:
            if p.get(self.key) is not None:
                by_pid.setdefault(p[self.key], []).append(p["uuid"])
        for f in self.tables[feedback]:
            uids = [f["uuid"]] if f["uuid"] is not None else by_pid.get(f[self.key], [])
            for uid in uids:
                if uid not in labels or f["received_at"] >= labels[uid][0]:
                    keyed = f[self.key] if f["uuid"] is not None else None
                    labels[uid] = (f["received_at"], f[self.target], keyed)
        rows = sorted(
            (
                {
                    **p,
                    # a label by uuid may carry the key the prediction lacks
                    self.key: p.get(self.key)
                    if p.get(self.key) is not None
                    else labels[p["uuid"]][2],
                    "label": labels[p["uuid"]][1],
                    "labelled_at": labels[p["uuid"]][0],
                }
                for p in preds
                if p["uuid"] in labels
            ),
            key=lambda r: (r["created_at"], r["uuid"]),
        )
        if limit is not None:
            rows = rows[len(rows) - min(limit, len(rows)) :]
        if landed_in is not None:
            keys = {r[self.key] for r in self.tables[landed_in]}
            rows = [{**r, "landed": r.get(self.key) in keys} for r in rows]
        if not rows:
            return pa.table(
                {
                    "model_version": pa.array([], pa.string()),
                    "prediction": pa.array([], pa.int64()),
                    "label": pa.array([], pa.int64()),
                }
            )
        return pa.Table.from_pylist(rows)

    def labelled_accuracy(
        self,
        predictions: str,
        feedback: str,
        bucket_seconds: int | None = None,
        landed_in: str | None = None,
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[Any, ...], list[float]] = {}
        delays: dict[tuple[Any, ...], list[float]] = {}
        after: dict[tuple[Any, ...], int] = {}
        first = self._first_landed(landed_in) if landed_in is not None else {}
        for r in self.labelled_predictions(predictions, feedback).to_pylist():
            key: tuple[Any, ...] = (r["model_version"],)
            landed = first.get(r.get(self.key)) if r.get(self.key) is not None else None
            if landed is not None and landed <= r["created_at"]:
                after[key] = after.get(key, 0) + 1
                if not bucket_seconds:  # the version is listed, with nothing counted
                    groups.setdefault(key, [0, 0, 0.0, 0.0])
                continue
            delays.setdefault(key, []).append(
                max(0.0, (r["labelled_at"] - r["created_at"]).total_seconds())
            )
            if bucket_seconds:
                key += (int(r["created_at"].timestamp()) // bucket_seconds * bucket_seconds,)
            counts = groups.setdefault(key, [0, 0, 0.0, 0.0])
            counts[0] += 1
            if self.spec.regression:
                err = r["prediction"] - r["label"]
                counts[2] += abs(err)
                counts[3] += err * err
            else:
                counts[1] += int(r["prediction"] == r["label"])
        names = ("model_version", "at")
        extra = (
            (lambda a, q: {"abs_error": a, "squared_error": q})
            if self.spec.regression
            else (lambda a, q: {})
        )

        def delay(k: tuple[Any, ...]) -> dict[str, float]:
            if bucket_seconds:
                return {}
            d = np.asarray(delays.get(k, []))
            return {
                "delay_p50_s": float(np.quantile(d, 0.5)) if d.size else None,
                "delay_p90_s": float(np.quantile(d, 0.9)) if d.size else None,
                "predicted_after_landing": after.get(k, 0),
            }

        return [
            {
                **dict(zip(names, k, strict=False)),
                "labelled": int(n),
                "correct": int(c),
                **extra(a if n else None, q if n else None),  # (no row counted: NULL sums)
                **delay(k),
            }
            for k, (n, c, a, q) in sorted(groups.items())
        ]

    def recent_predictions(
        self, predictions: str, limit: int, since: Any = None, landed_in: str | None = None
    ) -> pa.Table:
        rows = [r for r in self.tables[predictions] if since is None or r["created_at"] >= since]
        rows = sorted(rows, key=lambda r: r["created_at"], reverse=True)[:limit]
        table = pa.Table.from_pylist(rows, schema=self._schema(predictions))
        if landed_in is None:
            return table
        first = self._first_landed(landed_in)
        learnt = [
            r.get(self.key) is not None
            and first.get(r[self.key]) is not None
            and first[r[self.key]] <= r["created_at"]
            for r in rows
        ]
        return table.append_column("learnt", pa.array(learnt, pa.bool_()))

    def _first_landed(self, table: str) -> dict[Any, Any]:
        """When each key first landed in ``table``."""
        first: dict[Any, Any] = {}
        for t in self.tables[table]:
            first[t[self.key]] = min(t["ingested_at"], first.get(t[self.key], t["ingested_at"]))
        return first

    def served_per_version(self, predictions: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.tables[predictions]:
            out[r["model_version"]] = out.get(r["model_version"], 0) + 1
        return out

    def labels_from_ingestion(
        self, training: str, predictions: str, feedback: str, ingestion_id: str, source: str
    ) -> int:
        k, y = self.key, self.target
        predicted = {r[k] for r in self.tables[predictions]}
        new = [
            {"uuid": None, k: r[k], y: r[y], "received_at": r["ingested_at"], "source": source}
            for r in self.tables[training]
            if r["ingestion_id"] == ingestion_id and r[k] in predicted
        ]
        self.tables[feedback].extend(new)
        return len(new)

    def known_uuids(self, predictions: str, uuids: list[str]) -> set[str]:
        have = {r["uuid"] for r in self.tables[predictions]}
        return {u for u in uuids if u in have}

    def predictions_of(self, predictions: str, uuids: list[str]) -> pa.Table:
        wanted = set(uuids)
        rows = [r for r in self.tables[predictions] if r["uuid"] in wanted]
        return pa.Table.from_pylist(rows, schema=self._schema(predictions))


class InMemoryMessageBus:
    def __init__(self, max_attempts: int = 5) -> None:
        self.max_attempts = max_attempts
        self.attempts_of: dict[str, int] = {}
        self.subs: dict[str, str] = {}
        self.messages: dict[str, tuple[str, bytes, dict[str, str]]] = {}
        self.deliveries: dict[tuple[str, str], dict[str, Any]] = {}
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    def create_subscription(
        self, subscription: str, topic: str, *, max_attempts: int | None = None
    ) -> None:
        self.subs[subscription] = topic
        if max_attempts is not None:
            self.attempts_of[subscription] = max_attempts

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        mid = uuid.uuid4().hex
        self.messages[mid] = (topic, data, dict(attributes))
        self.published.append((topic, data, dict(attributes)))
        for sub, t in self.subs.items():
            if t == topic:
                self.deliveries[(sub, mid)] = {"state": "ready", "attempts": 0, "leased": False}
        return mid

    def pull(self, subscription: str, max_messages: int = 1, timeout: float = 0.0) -> list[Message]:
        out = []
        for (sub, mid), d in self.deliveries.items():
            if sub == subscription and d["state"] == "ready" and not d["leased"]:
                d["leased"], d["attempts"] = True, d["attempts"] + 1
                _, data, attrs = self.messages[mid]
                out.append(Message(mid, data, attrs, d["attempts"]))
                if len(out) >= max_messages:
                    break
        return out

    def ack(self, subscription: str, message_id: str) -> None:
        d = self.deliveries[(subscription, message_id)]
        d["state"], d["leased"] = "acked", False

    def nack(self, subscription: str, message_id: str, error: str) -> None:
        d = self.deliveries[(subscription, message_id)]
        d["leased"], d["error"] = False, error
        if d["attempts"] >= self.attempts_of.get(subscription, self.max_attempts):
            d["state"] = "dead"

    def dead_letter(self, subscription: str, message_id: str, error: str) -> None:
        d = self.deliveries[(subscription, message_id)]
        d["state"], d["leased"], d["error"] = "dead", False, error

    def release_leases(self) -> int:
        n = 0
        for d in self.deliveries.values():
            if d["leased"] and d["state"] == "ready":
                d["leased"], n = False, n + 1
        return n

    def stats(self) -> list[dict[str, Any]]:
        out = []
        for sub, topic in sorted(self.subs.items()):
            ds = [d for (s, _), d in self.deliveries.items() if s == sub]
            out.append(
                {
                    "subscription": sub,
                    "topic": topic,
                    "pending": sum(d["state"] == "ready" and not d["leased"] for d in ds),
                    "leased": sum(d["state"] == "ready" and d["leased"] for d in ds),
                    "acked": sum(d["state"] == "acked" for d in ds),
                    "dead_lettered": sum(d["state"] == "dead" for d in ds),
                }
            )
        return out
