#!/usr/bin/env bash
# Install, migrate, seed the demo data and run the portal and the dispatcher.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh run
export FLASK_APP=app
port="${OVERREAD_PORT:-5000}"
export OVERREAD_BASE_URL="${OVERREAD_BASE_URL:-http://127.0.0.1:$port}"  # links in messages
.venv/bin/flask db upgrade
.venv/bin/flask demo
.venv/bin/flask dispatch &
dispatcher=$!
trap 'kill "$dispatcher" 2>/dev/null || true' EXIT INT TERM
echo "Overread is at http://127.0.0.1:$port/ (Ctrl-C stops web and dispatcher)"
.venv/bin/flask run --host 127.0.0.1 --port "$port"
