"""Google Cloud clients made from the settings (the only place that makes them).

On Google Cloud the clients find their credentials themselves (the function's
service account). Against emulators, Cloud Storage and Pub/Sub switch to
anonymous access from their ``*_EMULATOR_HOST`` variables by themselves;
BigQuery is given its endpoint and anonymous credentials here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minimlops.config import Settings


@dataclass
class Clients:
    storage: Any
    bigquery: Any
    storage_api: bool  # read big query results through the BigQuery Storage API
    bigquery_write: Any  # makes a BigQuery Storage Write API client; None: streaming inserts


def make_clients(settings: Settings) -> Clients:
    from google.cloud import bigquery, storage

    if not settings.gcp_project:
        from minimlops.config import ConfigError

        raise ConfigError(
            "the gcp backend needs a project: set GOOGLE_CLOUD_PROJECT (or MINIMLOPS_GCP_PROJECT)"
        )
    if settings.bigquery_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        bq = bigquery.Client(
            project=settings.gcp_project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=settings.bigquery_emulator_host),
        )
    else:
        bq = bigquery.Client(project=settings.gcp_project, location=settings.gcp_location)
    gcs = storage.Client(project=settings.gcp_project)
    return Clients(
        storage=gcs,
        bigquery=bq,
        storage_api=not settings.bigquery_emulator_host,
        bigquery_write=_write_client(settings),
    )


def _write_client(settings: Settings) -> Any:
    """A maker of the Storage Write API client: Google's, or the emulator's
    gRPC port (a BigQuery emulator without one: None, streaming inserts)."""
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient

    host = settings.bigquery_storage_emulator_host
    if host:

        def emulated() -> Any:
            import grpc
            from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
                BigQueryWriteGrpcTransport,
            )

            channel = grpc.insecure_channel(host.removeprefix("http://"))
            return BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))

        return emulated
    return None if settings.bigquery_emulator_host else BigQueryWriteClient
