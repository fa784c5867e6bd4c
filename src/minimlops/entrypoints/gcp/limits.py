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
    540,
    "seconds an event-driven function may run",
    "https://cloud.google.com/functions/docs/configuring/timeout",
)
HTTP_TIMEOUT = Limit(
    3600,
    "seconds an HTTP function may run",
    "https://cloud.google.com/functions/docs/configuring/timeout",
)
CPU_FOR_MEMORY = (  # (more than this many MiB, needs at least this many vCPU)
    (4 * 1024, 2),
    (8 * 1024, 4),
    (16 * 1024, 6),
    (24 * 1024, 8),
)
MEMORY_SOURCE = "https://cloud.google.com/functions/docs/configuring/memory"
MAX_MEMORY_MIB = Limit(32 * 1024, "MiB of memory an instance may have", MEMORY_SOURCE)
CONCURRENCY_NEEDS_ONE_CPU = Limit(
    1,
    "vCPU an instance needs to handle more than one request at a time",
    "https://cloud.google.com/functions/docs/configuring/concurrency",
)
MAX_CONCURRENCY = Limit(
    1000,
    "requests one instance may handle at a time",
    "https://cloud.google.com/run/docs/about-concurrency",
)
FUNCTION_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,61}[a-zA-Z0-9]$")
FUNCTION_NAME_SOURCE = "https://cloud.google.com/functions/1stgendocs/deploy"
RUNTIMES = ("python311", "python312", "python313")
RUNTIMES_SOURCE = "https://cloud.google.com/run/docs/runtimes/python"

# -- Eventarc and Pub/Sub ---------------------------------------------------------
STORAGE_TRIGGER_LOCATION = "https://cloud.google.com/eventarc/docs/understand-locations"
DELIVERY_ATTEMPTS = (5, 100)
BACKOFF_SECONDS = (0, 600)  # a retry policy's minimum and maximum backoff
DELIVERY_ATTEMPTS_SOURCE = "https://cloud.google.com/pubsub/docs/handling-failures"

# -- Cloud Storage and IAM --------------------------------------------------------
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
BUCKET_NAME_SOURCE = "https://cloud.google.com/storage/docs/buckets#naming"
SERVICE_ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SERVICE_ACCOUNT_ID_SOURCE = (
    "https://cloud.google.com/iam/reference/rest/v1/projects.serviceAccounts/create"
)


def bucket_name_problem(name: str) -> str | None:
    """Why Cloud Storage would refuse this bucket name, or None."""
    if not BUCKET_NAME.match(name) or max(map(len, name.split("."))) > 63:
        return (
            "3 to 63 characters (222 with dots, 63 between them): lowercase letters, "
            "digits, dashes, underscores and dots, starting and ending with a letter or digit"
        )
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        return "may not start with 'goog' or contain 'google'"
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
