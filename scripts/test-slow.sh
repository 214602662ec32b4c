#!/usr/bin/env bash
# Run only the slow tests (end-to-end runs deselected by default); arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec bash scripts/test.sh -m slow "$@"
