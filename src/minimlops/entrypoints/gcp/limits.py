"""Google Cloud's documented limits that a deployment depends on, each once,
with the page it comes from.

The emulators accept any timeout, location, identity or size; a real project
does not. The deployment plan (:mod:`.plan`) is built from these values and
checked against them (:func:`.plan.violations`) before anything runs, and the
tests check the printed plan against them again. When Google changes a limit,
this is the one file to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """One documented value: what it is, and the page that says so."""

    value: int
    what: str
    source: str


# -- Cloud Run functions ----------------------------------------------------------
EVENT_TIMEOUT = Limit(
    540, "seconds an event-driven function may run",
    "https://cloud.google.com/functions/docs/configuring/timeout")
HTTP_TIMEOUT = Limit(
    3600, "seconds an HTTP function may run",
    "https://cloud.google.com/functions/docs/configuring/timeout")
CPU_FOR_MEMORY = (  # (more than this many MiB, needs at least this many vCPU)
    (4 * 1024, 2), (8 * 1024, 4), (16 * 1024, 6), (24 * 1024, 8))
MEMORY_SOURCE = "https://cloud.google.com/run/docs/configuring/services/memory-limits"
MAX_MEMORY_MIB = Limit(32 * 1024, "MiB of memory an instance may have", MEMORY_SOURCE)
CONCURRENCY_NEEDS_ONE_CPU = Limit(
    1, "vCPU an instance needs to handle more than one request at a time",
    "https://cloud.google.com/run/docs/about-concurrency")
MAX_CONCURRENCY = Limit(
    1000, "requests one instance may handle at a time",
    "https://cloud.google.com/run/docs/about-concurrency")
IN_MEMORY_DISK = (
    "https://cloud.google.com/run/docs/container-contract#filesystem")  # /tmp counts as memory
FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,61}[a-z0-9]$")
FUNCTION_NAME_SOURCE = "https://cloud.google.com/functions/docs/deploy#basics"
RUNTIMES = ("python311", "python312", "python313")
RUNTIMES_SOURCE = "https://cloud.google.com/functions/docs/runtime-support"

# -- Eventarc triggers ------------------------------------------------------------
STORAGE_TRIGGER_LOCATION = (
    "https://cloud.google.com/functions/docs/calling/storage#trigger_location")
TRIGGER_IDENTITY = "https://cloud.google.com/functions/docs/securing/function-identity"
STORAGE_AGENT_PUBLISHER = (
    "https://cloud.google.com/eventarc/docs/run/create-trigger-storage-gcloud#before-you-begin")

# -- Pub/Sub ----------------------------------------------------------------------
DELIVERY_ATTEMPTS = (5, 100)
DELIVERY_ATTEMPTS_SOURCE = "https://cloud.google.com/pubsub/docs/handling-failures"
BACKOFF_SECONDS = (0, 600)  # a retry policy's minimum and maximum backoff
ACK_DEADLINE_SECONDS = (10, 600)
ACK_DEADLINE_SOURCE = "https://cloud.google.com/pubsub/docs/lease-management"
DEAD_LETTER_AGENT = "https://cloud.google.com/pubsub/docs/handling-failures#grant_forwarding_permissions"
PUBSUB_MESSAGE_BYTES = Limit(10_000_000, "bytes of one published message",
                             "https://cloud.google.com/pubsub/quotas#resource_limits")

# -- BigQuery ---------------------------------------------------------------------
INSERT_ALL_BYTES = Limit(10 * 1024 * 1024, "bytes of one tabledata.insertAll request",
                         "https://cloud.google.com/bigquery/quotas#streaming_inserts")
INSERT_ALL_ROWS = Limit(50_000, "rows of one tabledata.insertAll request",
                        "https://cloud.google.com/bigquery/quotas#streaming_inserts")
INSERT_ALL_ROWS_RECOMMENDED = Limit(
    500, "rows per insertAll request Google recommends",
    "https://cloud.google.com/bigquery/quotas#streaming_inserts")
MIN_BYTES_BILLED = Limit(10 * 1024 * 1024, "bytes every query bills at least, per table",
                         "https://cloud.google.com/bigquery/pricing#on_demand_pricing")
LOAD_JOB_LOCATION = "https://cloud.google.com/bigquery/docs/locations#data-locations"
PARTITIONING = "https://cloud.google.com/bigquery/docs/partitioned-tables#date_timestamp_partitioned_tables"
CLUSTER_COLUMNS = Limit(4, "clustering columns of a table",
                        "https://cloud.google.com/bigquery/docs/clustered-tables#limitations")

# -- Cloud Storage, IAM, Secret Manager -------------------------------------------
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
BUCKET_NAME_SOURCE = "https://cloud.google.com/storage/docs/buckets#naming"
SERVICE_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SERVICE_ACCOUNT_ID_SOURCE = "https://cloud.google.com/iam/docs/service-accounts-create#creating"
SECRETS_SOURCE = "https://cloud.google.com/functions/docs/configuring/secrets"


def bucket_name_problem(name: str) -> str | None:
    """Why Cloud Storage would refuse this bucket name, or None."""
    if not BUCKET_NAME.match(name):
        return ("3 to 63 characters: lowercase letters, digits, dashes, underscores and "
                "dots, starting and ending with a letter or digit")
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return "may not start with 'goog' or contain 'google'"
    if "." not in name and len(name) > 63:
        return "at most 63 characters"
    return None


def min_cpu(memory_mib: int) -> int:
    """The fewest vCPU an instance with this much memory may have."""
    need = 1
    for above, cpu in CPU_FOR_MEMORY:
        if memory_mib > above:
            need = cpu
    return need


def mib(memory: str) -> int:
    """'512Mi', '1Gi', '4Gi' -> MiB."""
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", memory).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Gi" else 1)


def trigger_location(bucket_location: str) -> str:
    """The Eventarc trigger location of a bucket's events: the bucket's own
    location (region, dual-region or multi-region), lowercase."""
    return bucket_location.lower()
