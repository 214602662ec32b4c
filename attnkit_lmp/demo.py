"""Placeholder demo: a tiny random CogVideoX pipeline on the CPU, written out as mp4, gif and metrics.

It shows the whole path from prompt to video file without any download; the toy-world motion
transfer demo replaces it. Run ``python -m attnkit_lmp.demo --out demo_out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnkit_lmp.cli import register_command

PROMPT = "a red ball rolls left across the field"
# 32 x 32 frames are hard to see; each pixel becomes an 8 x 8 block in the written files.
UPSCALE = 8
FPS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and of the noise")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps")
    parser.add_argument("--prompt", default=PROMPT, help="text prompt")


def run(args: argparse.Namespace) -> int:
    import imageio.v3 as iio
    import torch

    from attnkit.testing import TINY_CALL_KWARGS, tiny_cogvideox_pipeline

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    pipe = tiny_cogvideox_pipeline("t2v", "1.0", seed=args.seed)
    built = time.perf_counter()
    call_kwargs = {**TINY_CALL_KWARGS, "num_inference_steps": args.steps}
    frames = pipe(
        prompt=args.prompt, generator=torch.Generator().manual_seed(args.seed), **call_kwargs
    ).frames[0]
    generated = time.perf_counter()

    # (frames, channels, height, width) in [0, 1] -> (frames, height, width, 3) uint8, upscaled
    video = (frames.permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    video = video.repeat(UPSCALE, axis=1).repeat(UPSCALE, axis=2)
    iio.imwrite(out / "video.mp4", video, plugin="pyav", codec="libx264", fps=FPS)
    iio.imwrite(out / "video.gif", video, duration=1000 / FPS, loop=0)
    written = time.perf_counter()

    metrics = {
        "what": "tiny random-weight CogVideoX 1.0 text-to-video pipeline (placeholder demo)",
        "prompt": args.prompt,
        "seed": args.seed,
        "num_inference_steps": args.steps,
        "frames": int(video.shape[0]),
        "generated_height_width": [int(frames.shape[2]), int(frames.shape[3])],
        "written_height_width": [int(video.shape[1]), int(video.shape[2])],
        "seconds_build": round(built - start, 3),
        "seconds_generate": round(generated - built, 3),
        "seconds_write": round(written - generated, 3),
        "seconds_total": round(written - start, 3),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {out / 'video.mp4'}, {out / 'video.gif'}, {out / 'metrics.json'} in {metrics['seconds_total']} s")
    return 0


register_command("demo", "run the demo and write video.mp4, video.gif and metrics.json", add_arguments, run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnkit_lmp.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
