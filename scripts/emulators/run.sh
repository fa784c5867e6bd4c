#!/usr/bin/env bash
# Run a command with the emulators up (started here, stopped on exit):
#     scripts/emulators/run.sh pytest -m gcp
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/setup.sh"
env_lines=$("$HERE/start.sh")
trap '"$HERE/stop.sh"' EXIT
eval "$env_lines"
"$@"
