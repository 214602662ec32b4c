#!/usr/bin/env bash
# Prepare this checkout for scripts/gpu-train.sh on a lent GPU machine, and print the device command.
#
#   bash scripts/prepare-gpu-train.sh            # ARCH=wan for the Wan toy's run
#
# 1. Downloads the wheels the GPU machine's image lacks into .whl/ (git-ignored; the device call must
#    name it in `carry`): diffusers at this .venv's version, and importlib_metadata.
# 2. Checks the size of what a device call sends (tracked files plus .whl/) against its 64 MiB limit and,
#    when it is over, prints the lines that set aside, for the call, what training ARCH does not need.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ARCH="${ARCH:-cogvideox}"
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
    # Not needed there: the bundled toys, and the run folders of the other architectures.
    aside=(attnkit_lmp/toy/pretrained attnkit_lmp/toy/pretrained_wan)
    for run in training/*-v2; do
        [ "$run" = "training/$ARCH-v2" ] || aside+=("$run")
    done
    size=$(du -csb "${aside[@]}" | tail -1 | cut -f1)
    echo "over the limit: for the call, move what training $ARCH does not need ($(( size / 1024 / 1024 )) MiB) out of the tree:" >&2
    echo "  mkdir -p /tmp/aside && for p in ${aside[*]}; do mkdir -p /tmp/aside/\$(dirname \$p) && mv \$p /tmp/aside/\$p; done" >&2
    echo "and back after it:" >&2
    echo "  for p in ${aside[*]}; do mv /tmp/aside/\$p \$p; done" >&2
fi
echo 'device command (run tool, carry [".whl"], timeout_s 600):'
echo "  OUT=\$OUT ARCH=$ARCH MINUTES=8 STEPS=60000 bash scripts/gpu-train.sh    # STEPS: where the schedule ends (train-toy.sh's defaults: cogvideox 48,000, wan 30,000)"
