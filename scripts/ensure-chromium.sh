#!/usr/bin/env bash
# Make the browser tests runnable: Debian's chromium (apt) and the playwright driver (pip, into .venv).
# A no-op when both are there. Playwright only drives /usr/bin/chromium; it never downloads a browser.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-chromium.sh: chromium is missing and there is no apt-get; install Chromium and put it on PATH" >&2
        exit 1
    fi
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=(sudo)
    fi
    echo "ensure-chromium.sh: installing Debian's chromium" >&2
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import playwright.sync_api' >/dev/null 2>&1; then
    echo "ensure-chromium.sh: installing the playwright driver into .venv" >&2
    .venv/bin/python -m pip install -qq --disable-pip-version-check playwright
fi

chromium --version 2>/dev/null
