#!/usr/bin/env bash
# Continue (or start) training a toy-world v2 model from its committed run folder, for a bounded time.
#
#   bash scripts/train-toy.sh                      # CogVideoX toy, CPU, 150 minutes, 1 thread
#   ARCH=wan bash scripts/train-toy.sh             # the Wan 2.1-architecture toy
#   DEVICE=cuda MINUTES=8 bash scripts/train-toy.sh   # on one NVIDIA GPU: the same run, much faster
#   STEPS=60000 bash scripts/train-toy.sh          # continue a finished run on a longer schedule
#
# The run folder training/<arch>-v2/ holds checkpoint.pt, pipeline/ and train.log; committing it after a
# session lets the next one (or a GPU machine) continue exactly where this one stopped. With ARCHIVE=PATH
# the trained model is also packed into one .tar.gz (e.g. to bring a GPU run back as a single file;
# WITH_CHECKPOINT=1 adds the checkpoint).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ARCH="${ARCH:-cogvideox}"
DEVICE="${DEVICE:-cpu}"
MINUTES="${MINUTES:-150}"
THREADS="${THREADS:-1}"
RUN="training/${ARCH}-v2"

if [ -n "${PYTHON:-}" ]; then
    # A machine with its own torch (e.g. a GPU box without the project's .venv): run from the checkout.
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    bash scripts/setup.sh
    PYTHON=.venv/bin/python
fi

# The recipe of the v2 toys; changing a value other than --steps changes the run (the checkpoint
# refuses a different model, data stream or seed). --steps (STEPS) only sets where the cosine schedule
# ends: raising it mid-run lifts the learning rate from that step on (the CogVideoX run went from 12,000
# to 30,000 at step 8,750, when 12,000 steps were clearly too few for shape and motion, to 40,000 at 30,000
# and to 48,000 at 35,000, while shape and coherence were still rising). A run that has reached STEPS
# stops at once; pass a larger STEPS to continue it, e.g. STEPS=60000 on a GPU.
recipe=(--seed 0 --high-noise-fraction 0.4 --temporal-loss-weight 1.0 --checkpoint-every 250)
case "$ARCH" in
    cogvideox) recipe+=(--steps "${STEPS:-48000}") ;;
    wan) recipe+=(--steps "${STEPS:-30000}" --architecture wan --num-frames 9 --high-noise-start 900) ;;
    *) echo "train-toy.sh: ARCH=$ARCH is not a v2 toy; use cogvideox or wan" >&2; exit 2 ;;
esac
workers=0
if [ "$DEVICE" != cpu ]; then
    workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))  # the GPU waits on rendering otherwise
fi

echo "train-toy.sh: $ARCH on $DEVICE for at most $MINUTES min, $THREADS torch thread(s), $workers data worker(s), in $RUN" >&2
"$PYTHON" -m attnkit_lmp.toy train --out "$RUN" --resume "${recipe[@]}" --device "$DEVICE" \
    --threads "$THREADS" --data-workers "$workers" --time-limit-minutes "$MINUTES" --no-progress "$@"

if [ -n "${ARCHIVE:-}" ]; then
    # The model (pipeline/, about 12 MB) and its log; the 40 MB checkpoint only when asked for. A GPU
    # lease returns files of at most 16 MiB each, so a larger archive is cut into numbered parts of
    # PART_MIB MiB (ARCHIVE.part0, .part1, ...): `cat ARCHIVE.part* > ARCHIVE` joins them again.
    members=(pipeline train.log)
    [ "${WITH_CHECKPOINT:-0}" = 1 ] && members+=(checkpoint.pt)
    partial="$ARCHIVE.tmp"  # not matched by the .part* glob below
    tar -czf "$partial" -C "$RUN" "${members[@]}"
    part_bytes=$(( ${PART_MIB:-15} * 1024 * 1024 ))
    rm -f "$ARCHIVE" "$ARCHIVE".part*
    if [ "$(stat -c %s "$partial")" -gt "$part_bytes" ]; then
        split -b "$part_bytes" -d -a 1 "$partial" "$ARCHIVE.part"
        rm "$partial"
        echo "train-toy.sh: packed ${members[*]} of $RUN into $(ls "$ARCHIVE".part* | wc -l) parts $ARCHIVE.part*" >&2
    else
        mv "$partial" "$ARCHIVE"
        echo "train-toy.sh: packed ${members[*]} of $RUN into $ARCHIVE" >&2
    fi
fi
