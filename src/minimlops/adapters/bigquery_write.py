"""CommittedStreamWriter: rows into a BigQuery table exactly once, through the
BigQuery Storage Write API (google-cloud-bigquery-storage).

Each writer (one per serving instance) creates one COMMITTED write stream:
rows are visible to queries as soon as an append is acknowledged. Every
append names its offset, the number of rows the stream holds before it. When
an append's outcome is unknown (a timeout, a broken connection), the same rows
are sent again at the same offset: if the first try was written, BigQuery
answers ALREADY_EXISTS and nothing is written twice; if not, they are written
now. Streaming inserts de-duplicate retries only on a best-effort basis
(https://cloud.google.com/bigquery/docs/write-api#exactly-once).

Rows travel as protocol buffers whose descriptor is built from the table's
columns: INT64, FLOAT64, STRING, BOOL as themselves, TIMESTAMP as int64
microseconds since the epoch, DATE as int32 days since the epoch (the Write
API's preferred encodings,
https://cloud.google.com/bigquery/docs/supported-data-types). Protocol buffer
field names must be identifiers; for a column named otherwise (a space, a
dash) the Write API's column-name annotation is experimental, so such tables
log with streaming inserts instead (:meth:`supports`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from google.api_core import exceptions as gexc
from google.cloud.bigquery_storage_v1 import types, writer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from minimlops.domain.schema import Column

logger = logging.getLogger(__name__)
REQUEST_BYTES = 9_000_000  # serialized rows per AppendRows request (limit 10 MB)
ATTEMPTS = 4
TIMEOUT = 30.0  # seconds to wait for one append's answer
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
F = descriptor_pb2.FieldDescriptorProto
PROTO_TYPES = {
    "INTEGER": F.TYPE_INT64,
    "INT64": F.TYPE_INT64,
    "FLOAT": F.TYPE_DOUBLE,
    "FLOAT64": F.TYPE_DOUBLE,
    "NUMERIC": F.TYPE_DOUBLE,
    "STRING": F.TYPE_STRING,
    "BOOLEAN": F.TYPE_BOOL,
    "BOOL": F.TYPE_BOOL,
    "TIMESTAMP": F.TYPE_INT64,
    "DATE": F.TYPE_INT32,
}
# what a column of each type is cast to before it is written to a row
ENCODED = {"TIMESTAMP": pa.int64(), "DATE": pa.int32()}


class StreamGone(Exception):
    """The write stream can take no more rows (finalized, expired or missing)."""


class CommittedStreamWriter:
    """Appends rows to one table through one committed write stream.

    Args:
        make_client: makes the ``BigQueryWriteClient`` (on the first write, so
            an instance that never serves opens no channel).
        table_path: ``projects/P/datasets/D/tables/T``.
        columns: the table's columns (every row is typed by them).
        arrow_schema: the same columns as Arrow types (rows are typed with it).
    """

    def __init__(
        self, make_client: Any, table_path: str, columns: Sequence[Column], arrow_schema: pa.Schema
    ) -> None:
        self.make_client, self.client, self.table_path = make_client, None, table_path
        self.arrow_schema = arrow_schema
        self.names = [c.name for c in columns]
        self._encoded = {c.name: ENCODED[c.type] for c in columns if c.type in ENCODED}
        self._descriptor, self._row = _row_class(columns)
        self._stream: str | None = None
        self._connection: Any = None
        self._offset = 0
        self.appends = self.retried = self.already_written = 0

    @staticmethod
    def supports(columns: Sequence[Column]) -> bool:
        """Every column name is a protocol buffer identifier, every type known."""
        return all(IDENTIFIER.match(c.name) and c.type in PROTO_TYPES for c in columns)

    # -- rows ------------------------------------------------------------------
    def encode(self, rows: list[dict[str, Any]]) -> list[bytes]:
        """Serialized protocol buffer rows, typed like the table."""
        table = pa.Table.from_pylist(rows, schema=self.arrow_schema)
        columns = [
            table.column(n).cast(self._encoded[n]) if n in self._encoded else table.column(n)
            for n in self.names
        ]
        make, names = self._row, self.names
        return [
            make(
                **{n: v for n, v in zip(names, values, strict=True) if v is not None}
            ).SerializeToString()
            for values in zip(*(c.to_pylist() for c in columns), strict=True)
        ]

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append rows exactly once; returns when BigQuery has them."""
        serialized = self.encode(rows)
        start, size = 0, 0
        for i, row in enumerate(serialized):
            if i > start and size + len(row) > REQUEST_BYTES:
                self._append(serialized[start:i])
                start, size = i, 0
            size += len(row)
        if start < len(serialized):
            self._append(serialized[start:])

    # -- the stream ------------------------------------------------------------
    def _open(self) -> None:
        if self.client is None:
            self.client = self.make_client()
        stream = self.client.create_write_stream(
            parent=self.table_path,
            write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED),
            timeout=TIMEOUT,
        )
        template = types.AppendRowsRequest(
            write_stream=stream.name,
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=self._descriptor)
            ),
        )
        self._stream, self._offset = stream.name, 0
        self._connection = writer.AppendRowsStream(self.client, template)
        logger.info("bigquery: writing predictions through stream %s", stream.name)

    def _reconnect(self) -> None:
        """A new connection to the same stream (its rows and offset stay)."""
        self._close_connection()
        template = types.AppendRowsRequest(
            write_stream=self._stream,
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=self._descriptor)
            ),
        )
        self._connection = writer.AppendRowsStream(self.client, template)

    def _close_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def _append(self, rows: list[bytes]) -> None:
        last: Exception | None = None
        for _ in range(ATTEMPTS):
            if self._stream is None:
                self._open()
            elif self._connection is None:
                self._reconnect()
            request = types.AppendRowsRequest(
                write_stream=self._stream,
                offset=self._offset,  # the stream on each: the emulator asks
                proto_rows=types.AppendRowsRequest.ProtoData(
                    rows=types.ProtoRows(serialized_rows=rows)
                ),
            )
            try:
                self._connection.send(request).result(timeout=TIMEOUT)
            except gexc.AlreadyExists:  # an earlier try of this very append was written
                self.already_written += 1
            except (gexc.NotFound, gexc.FailedPrecondition, gexc.OutOfRange) as exc:
                # The stream takes no more rows (finalized, expired, missing):
                # refused before anything was written. A new stream, from 0.
                logger.warning(
                    "bigquery: write stream %s refused an append (%s); opening another",
                    self._stream,
                    exc,
                )
                self._close_connection()
                self._stream, last = None, exc
                self.retried += 1
                continue
            except Exception as exc:  # unknown outcome: the same offset again, if the stream lives
                logger.warning(
                    "bigquery: append at offset %d failed (%s); retrying", self._offset, exc
                )
                self._close_connection()
                if not self._alive():
                    self._stream = None
                last = exc
                self.retried += 1
                continue
            self._offset += len(rows)
            self.appends += 1
            return
        raise RuntimeError(
            f"BigQuery refused an append of {len(rows)} rows after {ATTEMPTS} tries: {last}"
        )

    def _alive(self) -> bool:
        """The stream still takes rows (asked of BigQuery: GetWriteStream).
        One that is gone was refused before writing, except an append that
        was lost with it: that one can reach the table twice, and the reads
        keep one row per uuid."""
        try:
            self.client.get_write_stream(name=self._stream, timeout=TIMEOUT)
        except (gexc.NotFound, gexc.FailedPrecondition):
            logger.warning("bigquery: write stream %s is gone; opening another", self._stream)
            return False
        except gexc.GoogleAPICallError:
            return True  # cannot tell: the same stream and offset, the safe retry
        return True

    def close(self) -> None:
        self._close_connection()


def _row_class(columns: Sequence[Column]) -> tuple[descriptor_pb2.DescriptorProto, Any]:
    """The rows' protocol buffer (proto2, as the Write API reads it): its
    descriptor, sent once a connection, and a class that builds rows."""
    file = descriptor_pb2.FileDescriptorProto(
        name="minimlops_row.proto", package="minimlops", syntax="proto2"
    )
    message = file.message_type.add(name="Row")
    for number, column in enumerate(columns, start=1):
        message.field.add(
            name=column.name, number=number, type=PROTO_TYPES[column.type], label=F.LABEL_OPTIONAL
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message, message_factory.GetMessageClass(pool.FindMessageTypeByName("minimlops.Row"))
