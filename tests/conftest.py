"""Shared fixtures: settings in a temporary data home, generated data, fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minimlops import projects
from minimlops.config import Settings
from minimlops.domain.project import Project
from minimlops.domain.schema import table_schema
from minimlops.generate import write_csv
from minimlops.ports import KeySpec
from minimlops.services.deps import Deps
from tests.fakes import InMemoryMessageBus, InMemoryObjectStore, InMemoryWarehouse

REPO = Path(__file__).resolve().parents[1]
TITANIC = projects.load("titanic")
TABLES = ("training_data", "predictions_data", "feedback", "ingestion_ledger", "retrain_triggers")


def schemas_of(project: Project) -> dict[str, tuple]:
    return {t: table_schema(t, project) for t in TABLES}


def key_of(project: Project) -> KeySpec:
    return KeySpec(project.key, project.key_column.type, project.target, project.task)


SCHEMAS = schemas_of(TITANIC)


# Tests of the flow train with a short selection budget (the candidates past it
# are listed as skipped); selection itself is tested with the full budget in
# tests/unit/test_model_quality.py, and the local flow runs with the default.
TEST_BUDGET_S = 3.0


def fake_deps_for(project: Project, **knobs: object) -> Deps:
    """Deps on the in-memory fakes for a project."""
    knobs.setdefault("training_budget_s", TEST_BUDGET_S)
    return Deps(
        store=InMemoryObjectStore(),
        warehouse=InMemoryWarehouse(schemas_of(project), key=key_of(project)),
        bus=InMemoryMessageBus(),
        project=project,
        derive=projects.derived_functions(project),
        **knobs,
    )  # type: ignore[arg-type]


def fresh_python(code: str, *args: str, timeout: float = 120) -> str:
    """Run ``code`` in a new interpreter (what a new process imports, this
    test process's modules aside) and return the last line it printed."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def example_csv() -> Path | None:
    """The real Titanic file when MINIMLOPS_EXAMPLE_DATA points at it."""
    value = os.environ.get("MINIMLOPS_EXAMPLE_DATA")
    return Path(value) if value and Path(value).is_file() else None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, home=tmp_path / "home", port=0, settle_seconds=0.0, cv_folds=3)


@pytest.fixture
def fake_deps() -> Deps:
    return fake_deps_for(TITANIC, cv_folds=3)


@pytest.fixture(scope="session")
def passengers_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 generated passengers, valid."""
    path = tmp_path_factory.mktemp("data") / "passengers.csv"
    write_csv(path, 800, seed=7)
    return path


EMULATOR_VARS = (
    "PUBSUB_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_HOST",
    "BIGQUERY_STORAGE_EMULATOR_HOST",
)


@pytest.fixture(scope="session")
def gcp_emulators() -> dict[str, str]:
    """The emulators' environment (scripts/emulators/start.sh; `make test-gcp`).

    Missing emulators fail the test in CI and skip it elsewhere, with the
    command that starts them.
    """
    missing = [v for v in EMULATOR_VARS if not os.environ.get(v)]
    if missing:
        msg = (
            f"Google Cloud emulators not running ({', '.join(missing)} unset): run `make test-gcp`"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return {v: os.environ[v] for v in EMULATOR_VARS} | {
        "GOOGLE_CLOUD_PROJECT": os.environ.get("GOOGLE_CLOUD_PROJECT", "test-project")
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of running servers, processes and a browser are the e2e tier
    (``make test-e2e``); those also marked ``smoke`` run in the default tier."""
    for item in items:
        path = Path(str(item.path)).resolve()
        if any(path.is_relative_to(REPO / "tests" / d) for d in ("e2e", "browser")):
            item.add_marker(pytest.mark.e2e)
