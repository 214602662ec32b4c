#!/usr/bin/env bash
# Set up .venv, then run the demo; writes its video and metrics to the folder given (default demo_out).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
out="${1:-demo_out}"
shift || true
exec .venv/bin/python -m attnkit_lmp.demo --out "$out" "$@"
