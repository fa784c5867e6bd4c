#!/usr/bin/env bash
# Stop the emulators that start.sh started (by recorded pid): TERM, then KILL after 10 s.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${MINIMLOPS_EMU_DIR:-$REPO/.emulators}/state
shopt -s nullglob
for file in "$STATE"/pids/*; do
  name=$(basename "$file"); pid=$(cat "$file")
  children=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)  # the `env` wrapper's server
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" $children 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" $children 2>/dev/null || true
    echo "[emulators] stopped $name" >&2
  fi
  rm -f "$file"
done
