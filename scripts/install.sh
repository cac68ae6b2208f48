#!/usr/bin/env bash
# Set up strata in ./.venv. Idempotent: a second run only checks stamps and returns in ~1 s.
#
# Order matters: torch==2.13.0 (a CPU wheel) goes in FIRST. Any other torch request — plain
# "torch", a newer range, or a dependency asking for torch before it is installed — makes pip
# fetch a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
TORCH_VERSION=2.13.0

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)'; then
  echo "strata needs Python 3.11 or newer; found $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "strata: creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP="$VENV/bin/python -m pip"

# Read the installed version from package metadata: importing torch costs seconds.
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('torch').startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
  echo "strata: installing torch==$TORCH_VERSION (CPU)"
  $PIP install --quiet "torch==$TORCH_VERSION"
fi

stamp="$VENV/.strata-deps"
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "strata: installing strata and its dependencies"
  $PIP install --quiet -e ".[models,test,train]"
  # --no-deps: see pyproject.toml (what their own requirements would drag in).
  $PIP install --quiet --no-deps "invisible-watermark==0.2.0" "PyWavelets>=1.4" "tinysoundfont>=0.3.7,<0.4"
  echo "$want" > "$stamp"
fi

# The CLIP tokenizer for single-file SD 1.5 / SDXL checkpoints (no installed package has its
# vocabulary): built from the BPE list in open_clip_torch's wheel (MIT), fetched, never installed.
vocab_dir=src/strata/models/configs
if [ ! -f "$vocab_dir/sdxl/tokenizer_2/merges.txt" ]; then
  echo "strata: fetching the CLIP tokenizer vocabulary (open_clip_torch wheel, 1.5 MB)"
  tmp=$(mktemp -d)
  if $PIP download --quiet --no-deps "open_clip_torch==3.3.0" -d "$tmp" \
      && "$VENV/bin/python" "$vocab_dir/clip_vocab.py" "$tmp"/open_clip_torch-3.3.0-*.whl; then
    :
  else
    echo "strata: no CLIP vocabulary; single-file checkpoints will need --config DIR" >&2
  fi
  rm -rf "$tmp"
fi

# Guard: nothing may have replaced the CPU torch with a CUDA build.
"$VENV/bin/python" - <<'PYCHECK'
import importlib.metadata as md, sys
torch_version = md.version("torch")
cuda = [d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").lower().startswith("nvidia-")]
if not torch_version.startswith("2.13.0") or cuda:
    sys.exit(f"strata: a CUDA torch crept in (torch {torch_version}, {cuda}); delete .venv and rerun")
PYCHECK
