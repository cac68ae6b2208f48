#!/usr/bin/env bash
# What only the test suite needs beyond ./.venv: Debian's chromium for the studio's browser
# tests (Playwright drives it; never `playwright install`, which downloads its own browser).
# Idempotent; without root/apt (e.g. a developer laptop) it says what to install and the
# browser tests skip with that reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "strata: installing Debian's chromium for the browser tests"
  # A failed install must not fail the suite: the browser tests then skip, saying why.
  if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "strata: could not apt-get install chromium; the browser tests will skip" >&2
  fi
else
  echo "strata: chromium is not installed and this user cannot apt-get it; the browser tests will skip" >&2
fi
