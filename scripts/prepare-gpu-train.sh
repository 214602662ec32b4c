#!/usr/bin/env bash
# Prepare this checkout for scripts/gpu-train.sh on a lent GPU machine, and print the device command.
#
#   bash scripts/prepare-gpu-train.sh
#
# 1. Downloads the wheels the GPU machine's image lacks into .whl/ (git-ignored; the device call must
#    name it in `carry`): diffusers at this .venv's version, and importlib_metadata.
# 2. Checks the size of what a device call sends (tracked files plus .whl/) against its 64 MiB limit and,
#    when it is over, prints the lines that set the bundled toys aside for the call and back.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
diffusers_version=$(.venv/bin/python -c "import diffusers; print(diffusers.__version__)")
rm -rf .whl && mkdir -p .whl
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d .whl "diffusers==$diffusers_version" importlib_metadata
ls .whl

limit=$(( 64 * 1024 * 1024 ))
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
wheels=$(du -sb .whl | cut -f1)
total=$(( tracked + wheels ))
echo "a device call sends $(( total / 1024 / 1024 )) MiB (tracked $(( tracked / 1024 / 1024 )), .whl $(( wheels / 1024 / 1024 ))); the limit is 64 MiB"
if [ "$total" -gt "$limit" ]; then
    bundles=$(du -csb attnkit_lmp/toy/pretrained attnkit_lmp/toy/pretrained_wan | tail -1 | cut -f1)
    echo "over the limit: for the call, move the bundled toys ($(( bundles / 1024 / 1024 )) MiB, not needed there) out of the tree:" >&2
    echo "  mkdir -p /tmp/aside && mv attnkit_lmp/toy/pretrained attnkit_lmp/toy/pretrained_wan /tmp/aside/" >&2
    echo "and back after it:" >&2
    echo "  mv /tmp/aside/pretrained /tmp/aside/pretrained_wan attnkit_lmp/toy/" >&2
fi
echo 'device command (run tool, carry [".whl"], timeout_s 600):'
echo '  OUT=$OUT MINUTES=8 STEPS=60000 bash scripts/gpu-train.sh    # STEPS: where the schedule ends; the CogVideoX run ends at 48,000'
