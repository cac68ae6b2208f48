#!/usr/bin/env bash
# Quick start, command 1: set everything up (./.venv) and run strata's demo.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
exec .venv/bin/strata demo "$@"
