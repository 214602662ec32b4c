#!/usr/bin/env bash
# Create .venv (if missing) and install attnkit with every extra the demo and the tests use; a quick no-op
# when up to date. Needs only Python >= 3.10 (set PYTHON to choose the interpreter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV_PYTHON=.venv/bin/python
# The torch release whose CPU build is asked for by its local version label: a local wheel satisfies it
# where one is offered, and on PyPI, which hosts no "+cpu" builds, it fails within seconds.
TORCH_CPU_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
# Progress stays visible: a first install takes minutes.
PIP=("$VENV_PYTHON" -m pip install --disable-pip-version-check --progress-bar on)

say() { echo "setup.sh: $*" >&2; }

if [ ! -x "$VENV_PYTHON" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || { say "$PYTHON is older than Python 3.10; set PYTHON=python3.x"; exit 1; }
    say "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi

# The install is redone whenever pyproject.toml changes or the checkout moves.
stamp=.venv/.attnkit-setup
wanted="$(pwd) $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi

has_nvidia_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

# Without an NVIDIA GPU, ask for the CPU build by name before anything can pull torch in: a bare `torch`
# requirement resolves on PyPI to the multi-gigabyte CUDA build (cuDNN, NCCL, cuBLAS, triton).
if ! "$VENV_PYTHON" -c 'import torch' >/dev/null 2>&1; then
    if has_nvidia_gpu; then
        say "NVIDIA GPU found; torch comes with its CUDA build from the package index"
    else
        say "no NVIDIA GPU found; installing the CPU build of torch (torch==$TORCH_CPU_VERSION+cpu)"
        if ! "${PIP[@]}" "torch==$TORCH_CPU_VERSION+cpu"; then
            say "torch==$TORCH_CPU_VERSION+cpu is not offered here; installing torch from the CPU index $TORCH_CPU_INDEX"
            "${PIP[@]}" torch --index-url "$TORCH_CPU_INDEX"
        fi
    fi
fi

say "installing attnkit with the extras the demo and the tests use (.[test]) into .venv"
"${PIP[@]}" -e '.[test]'
echo "$wanted" > "$stamp"
say "done"
