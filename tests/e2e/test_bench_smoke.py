"""The benchmarks keep working (a smoke run: tiny sizes, no assertion on time)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.harness import cli


def test_bench_smoke_writes_every_measurement(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install wrk (apt-get install wrk)")
        pytest.skip("wrk is not installed")
    out = tmp_path / "results"
    cli(tmp_path / "home", "bench", "--smoke", "--out", str(out))
    report = json.loads((out / "latest.json").read_text())
    names = [r["name"] for r in report["results"]]
    assert any("floor" in n for n in names) and any("batches of 1,000" in n for n in names)
    assert any("pandas baseline" in n for n in names) and any("ingest_data" in n for n in names)
    assert any("cold start" in n for n in names)
    errors = next(r for r in report["results"] if r["name"].startswith("non-2xx"))
    assert errors["value"] == 0
    assert (out / "latest.md").read_text().startswith("Machine:")
