#!/usr/bin/env bash
# Set up .venv, then run the test suite (fast tests by default); arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# The browser test of the attention explorer needs Debian's chromium; a no-op when it is there.
bash scripts/ensure-chromium.sh >/dev/null \
    || echo "test.sh: no chromium; the browser test skips (and fails under CI=true)" >&2

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; a test run must run tests" >&2
fi
exit "$status"
