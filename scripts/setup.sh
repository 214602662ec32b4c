#!/usr/bin/env bash
# Create .venv (if missing) and install attnkit with its test extras; a quick no-op when up to date.
# Needs only Python >= 3.10 (set PYTHON to choose the interpreter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV_PYTHON=.venv/bin/python
PIP=(.venv/bin/python -m pip install -qq --disable-pip-version-check)

if [ ! -x "$VENV_PYTHON" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || { echo "setup.sh: $PYTHON is older than Python 3.10; set PYTHON=python3.x" >&2; exit 1; }
    "$PYTHON" -m venv .venv
fi

# The install is redone whenever pyproject.toml changes or the checkout moves.
stamp=.venv/.attnkit-setup
wanted="$(pwd) $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi

# Without an NVIDIA GPU, install a CPU build of torch first: a bare `torch` requirement would
# otherwise pull the multi-gigabyte CUDA build from PyPI.
if ! "$VENV_PYTHON" -c 'import torch' >/dev/null 2>&1; then
    if ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; }; then
        echo "setup.sh: no NVIDIA GPU found; installing a CPU build of torch" >&2
        "${PIP[@]}" "torch==2.13.0" 2>/dev/null \
            || "${PIP[@]}" torch --index-url https://download.pytorch.org/whl/cpu
    fi
fi

echo "setup.sh: installing attnkit and its test extras into .venv" >&2
"${PIP[@]}" -e '.[test]'
echo "$wanted" > "$stamp"
