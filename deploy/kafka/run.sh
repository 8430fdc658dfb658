#!/usr/bin/env bash
# Local single-node Kafka broker (no Docker):  deploy/kafka/run.sh up|down|status [--port N]
# Thin wrapper around `python -m shared.dev.local_kafka`; see shared/dev/local_kafka.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
  PY="$ROOT/.venv/bin/python"
else
  PY=python3
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m shared.dev.local_kafka "$@"
