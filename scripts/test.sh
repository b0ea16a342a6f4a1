#!/usr/bin/env bash
# Install what the tests need (Python packages, Debian's Chromium) and run the whole suite.
# The suite starts its own PostgreSQL, S3 server, SMTP server and web servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/install-system-deps.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export OVERREAD_TEST_REQUIRE_ALL=1
exec .venv/bin/python -m pytest "$@"
