#!/usr/bin/env bash
# Quick start, command 2: install what the tests need (idempotent) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
bash scripts/install-test-deps.sh
exec .venv/bin/python -m pytest "$@"
