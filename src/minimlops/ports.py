"""Ports: the three capabilities the pipeline needs, as small Protocols.

Adapters (``minimlops.adapters``) implement them for the local backend (a
directory, DuckDB, SQLite) and for Google Cloud (Cloud Storage, BigQuery,
Pub/Sub). The contract tests in ``tests/contract`` pin down the behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: the journal process and the CLI's start stay light
    import pyarrow as pa

    from minimlops.domain.splits import Split


@dataclass(frozen=True)
class ObjectInfo:
    """An object's name, generation (changes on every write) and size."""

    bucket: str
    name: str
    generation: str
    size: int
    updated: float = 0.0  # seconds since the epoch

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class Message:
    """A delivered message: ``attempt`` counts deliveries, starting at 1."""

    id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    attempt: int = 1


@dataclass(frozen=True)
class KeySpec:
    """What a warehouse must know of the data set: the row key, its type
    (integer or string) and the target column."""

    key: str = "PassengerId"
    key_type: str = "integer"
    target: str = "Survived"
    task: str = "binary"

    @property
    def regression(self) -> bool:
        return self.task == "regression"


@dataclass(frozen=True)
class DataSummary:
    """Of a data table's newest row per key: how many rows each split has, and
    the ingestions those rows came from (sorted)."""

    splits: dict[str, int]
    ingestion_ids: tuple[str, ...]

    @property
    def rows(self) -> int:
        return sum(self.splits.values())

    @classmethod
    def of_counts(cls, counts: Iterable[tuple[str, str, int]]) -> DataSummary:
        """From (split, ingestion id, rows) groups, as a warehouse counts them."""
        splits: dict[str, int] = {}
        ids = set()
        for split, ingestion_id, n in counts:
            splits[split] = splits.get(split, 0) + int(n)
            ids.add(ingestion_id)
        return cls(splits, tuple(sorted(ids)))


class ObjectStore(Protocol):
    """Buckets of immutable-per-generation objects (a directory, or GCS)."""

    def write_bytes(
        self, bucket: str, name: str, data: bytes, *, if_generation_match: str | None = None
    ) -> ObjectInfo:
        """Write an object whole, atomically.

        Args:
            if_generation_match: "0" creates only if absent; another value
                replaces only if the current generation is that one.

        Raises:
            ConflictError: the precondition failed.
        """
        ...

    def read_bytes(self, bucket: str, name: str) -> bytes:
        """The object's bytes. Raises FileNotFoundError when absent."""
        ...

    def open(self, bucket: str, name: str) -> IO[bytes]:
        """A binary stream of the object, for files too big to read at once."""
        ...

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        """The object's info, or None when it does not exist."""
        ...

    def list(self, bucket: str, prefix: str = "") -> list[ObjectInfo]:
        """Objects whose name starts with prefix, sorted by name."""
        ...

    def move(self, bucket: str, name: str, new_name: str) -> ObjectInfo:
        """Rename an object within its bucket."""
        ...

    def delete(self, bucket: str, name: str) -> None:
        """Remove an object; no error when it is already gone."""
        ...


class Warehouse(Protocol):
    """Tables made from the JSON schemas: atomic loads, appends, queries."""

    def ensure_tables(self) -> None:
        """Create every table from its schema if it does not exist."""
        ...

    def load(
        self, table: str, batches: Iterable[pa.RecordBatch], ledger_row: Mapping[str, Any]
    ) -> int:
        """Append all batches and one ledger row in ONE transaction.

        If iterating ``batches`` raises, nothing is loaded and the error
        propagates. Returns the number of rows loaded. An adapter that finds
        an earlier, interrupted delivery of the same content finishes that one
        and updates ``ledger_row`` (a dict) in place with its identity.

        Raises:
            ConflictError: this content was loaded by another delivery.
        """
        ...

    def append(self, table: str, rows: pa.Table) -> None:
        """Append rows durably in one transaction (the prediction log's flush)."""
        ...

    def ledger(
        self, *, content_sha256: str | None = None, source_uri: str | None = None
    ) -> list[dict[str, Any]]:
        """Ledger rows for a content hash or an object URI, newest first."""
        ...

    def latest_summary(
        self,
        table: str,
        split: Split | None = None,
        *,
        ingestion_ids: Sequence[str] | None = None,
    ) -> DataSummary:
        """Row counts per split and ingestion ids of the newest row per key,
        without reading the rows themselves.

        Args:
            split: the split to count by (``Split.sql``); None or a stored one:
                the ``split`` column ingestion wrote.
            ingestion_ids: only rows these ingestions loaded (a snapshot).
        """
        ...

    def time_cutoffs(
        self,
        table: str,
        column: str,
        marks: tuple[float, float],
        *,
        ingestion_ids: Sequence[str] | None = None,
    ) -> tuple[Any, Any] | None:
        """Of the newest row per key, a date or timestamp column's two
        cut-offs: for each share in ``marks``, the first value with at least
        that share of the rows (nulls left out) before it; None without
        times. Computed by the warehouse (``domain.splits.cutoffs_from_counts``
        is the rule): only two values leave it, however many rows there are."""
        ...

    def latest_rows(
        self,
        table: str,
        *,
        ingestion_ids: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        per_split: int | None = None,
        split: Split | None = None,
    ) -> pa.Table:
        """The newest row per row key (PassengerId) of a data table, by key.

        Args:
            ingestion_ids: only rows these ingestions loaded (a snapshot taken
                earlier with ``latest_summary``: rows loaded since are not read).
            splits: only rows of these splits.
            per_split: at most this many rows of each split: those whose key
                has the smallest ``domain.schema.sample_rank``, a uniform sample
                that is the same on every backend. The warehouse picks them:
                only the sample leaves it, so the caller's memory stays bounded.
            split: the split to filter, sample and label by: its ``split``
                column holds it (see ``latest_summary``).
        """
        ...

    def counts(self) -> dict[str, int]:
        """Row count of every table."""
        ...

    def labelled_predictions(
        self,
        predictions: str,
        feedback: str,
        limit: int | None = None,
        landed_in: str | None = None,
    ) -> pa.Table:
        """Predictions joined with their newest true label (column ``label``),
        by uuid, or by the row key for labels that came in a file; oldest
        first. With ``limit``: only the newest ``limit`` of them. With
        ``landed_in`` (the training table): a boolean column ``landed``, true
        where the prediction's key is a row of that table."""
        ...

    def labelled_accuracy(
        self,
        predictions: str,
        feedback: str,
        bucket_seconds: int | None = None,
        landed_in: str | None = None,
    ) -> list[dict[str, Any]]:
        """Of the labelled predictions, per model version (and, with
        ``bucket_seconds``, per time bucket of the prediction: ``at``, its
        start in seconds since the epoch): ``labelled`` and ``correct``
        counts (regression: ``abs_error`` and ``squared_error`` sums), ordered
        by version (and ``at``). Without buckets also the label delay
        (``delay_p50_s``, ``delay_p90_s``). With ``landed_in`` (the training
        table), a prediction whose key had landed there at or before the
        moment it was made is left out of every figure (the model may have
        learnt its answer) and counted in ``predicted_after_landing``. Counted by the
        warehouse, so monitoring never reads the predictions themselves."""
        ...

    def recent_predictions(
        self, predictions: str, limit: int, since: Any = None, landed_in: str | None = None
    ) -> pa.Table:
        """The newest predictions, at most limit, none older than since. With
        ``landed_in`` (the training table): a boolean column ``learnt``, true
        where the prediction's key had landed there at or before the moment
        it was made (as :meth:`labelled_accuracy` leaves out)."""
        ...

    def served_per_version(self, predictions: str) -> dict[str, int]:
        """Number of predictions per model version."""
        ...

    def read(self, table: str) -> pa.Table:
        """A whole small table (e.g. the retrain triggers)."""
        ...

    def labels_from_ingestion(
        self, training: str, predictions: str, feedback: str, ingestion_id: str, source: str
    ) -> int:
        """Turn rows of an ingestion whose PassengerId was predicted into feedback."""
        ...

    def known_uuids(self, predictions: str, uuids: list[str]) -> set[str]:
        """Which of these prediction ids exist."""
        ...

    def predictions_of(self, predictions: str, uuids: list[str]) -> pa.Table:
        """The logged predictions with these ids, one row each (any order)."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run read-only SQL. Raises QueryError for anything else."""
        ...


class MessageBus(Protocol):
    """Topics with subscriptions; at-least-once delivery with ack."""

    def create_subscription(
        self, subscription: str, topic: str, *, max_attempts: int | None = None
    ) -> None:
        """Attach a subscription to a topic (idempotent); ``max_attempts``: its
        deliveries before dead-lettering, else the bus's."""
        ...

    def publish(self, topic: str, data: bytes, attributes: Mapping[str, str]) -> str:
        """Deliver a message to every subscription of topic; returns its id."""
        ...

    def pull(self, subscription: str, max_messages: int = 1) -> list[Message]:
        """Lease up to max_messages ready messages."""
        ...

    def ack(self, subscription: str, message_id: str) -> None:
        """The message was handled; never deliver it again."""
        ...

    def nack(self, subscription: str, message_id: str, error: str) -> None:
        """Handling failed: redeliver later, or dead-letter after N attempts."""
        ...

    def dead_letter(self, subscription: str, message_id: str, error: str) -> None:
        """Set a message aside at once, with the reason (it can never succeed)."""
        ...

    def stats(self) -> list[dict[str, Any]]:
        """Per subscription: pending, leased, acked and dead-lettered counts."""
        ...


class WebhookSender(Protocol):
    """POSTs a body to a URL (the alerts' webhooks)."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """The answer's status code.

        Raises:
            OSError: the receiver could not be reached or did not answer in time.
        """
        ...
