#!/usr/bin/env bash
# Continue a v2 toy's run on a lent GPU machine and bring it back as files of at most 15 MiB.
#
# Runs *there* (python3 has CUDA torch but no diffusers), from a checkout prepared here with
# `bash scripts/prepare-gpu-train.sh`, which also prints the device command to use:
#
#   OUT=/some/folder MINUTES=8 STEPS=60000 bash scripts/gpu-train.sh   # ARCH=wan for the Wan toy; STEPS as in train-toy.sh
#
# Writes $OUT/<arch>-v2.tar.gz.part0, .part1, ... (pipeline/, train.log and checkpoint.pt) and
# $OUT/gpu-train.log. Here, `cat <arch>-v2.tar.gz.part* | tar -xz -C training/<arch>-v2` puts the run
# folder back, and `bash scripts/train-toy.sh` continues it on CPU from the GPU's last step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${OUT:?set OUT to the folder whose files come back}"
ARCH="${ARCH:-cogvideox}"

if [ -d .whl ]; then
    # The packages the machine's image lacks (diffusers and its one missing requirement), carried as wheels.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -c "import torch, diffusers; assert torch.cuda.is_available(), 'no CUDA GPU'; print('torch', torch.__version__, 'diffusers', diffusers.__version__, torch.cuda.get_device_name())"

export PYTHON=python3 DEVICE=cuda ARCH MINUTES="${MINUTES:-8}" WITH_CHECKPOINT=1 ARCHIVE="$OUT/$ARCH-v2.tar.gz"
bash scripts/train-toy.sh 2>&1 | tee "$OUT/gpu-train.log"
