"""What recording attention maps costs: the same run with and without AttentionRecorder, side by side.

The run: a CogVideoX pipeline with the real attention width (48 heads x 64 = 3072, as CogVideoX-5B),
``--layers`` layers, random weights, 226 text tokens, the latent grid set by ``--height/--width/--frames``,
``--steps`` denoising steps, classifier-free guidance on (batch 2), latents out (no VAE decode). The
recorder keeps 2 subject words, both directions, every layer and every step of the ``cond`` branch.

Runs alternate (plain, recorded, recorded, plain, ...) after one warm-up of each, so background load
hits both alike; the ratio of the medians is the overhead. Wall time is what a user waits; the
process's CPU time is printed too, as other processes on a shared machine disturb it less.
Memory: the bytes of maps the recorder kept (exact tensor sizes) next to what full N x N maps of the
same branch, layers and steps would take.

    python benchmarks/bench_recorder.py                      # defaults below
    python benchmarks/bench_recorder.py --height 192 --width 192 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import attnkit
from attnkit.record import AttentionRecorder, format_bytes
from attnkit.testing import tiny_cogvideox_pipeline

PROMPT = "a red dog runs toward a blue ball on the grass"
WORDS = ["dog", "ball"]
TEXT_TOKENS = 226  # CogVideoX's max_sequence_length


def build_pipeline(layers: int, heads: int, head_dim: int):
    return tiny_cogvideox_pipeline(
        "t2v", num_layers=layers, num_attention_heads=heads, attention_head_dim=head_dim, text_len=TEXT_TOKENS
    )


def timed_run(pipe, args, recorder: AttentionRecorder | None) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one pipeline call."""
    call = dict(
        height=args.height,
        width=args.width,
        num_frames=args.frames,
        num_inference_steps=args.steps,
        max_sequence_length=TEXT_TOKENS,
        guidance_scale=6.0,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    if recorder is None:
        pipe(PROMPT, **call)
    else:
        with attnkit.attach(pipe, plugins=[recorder]):
            pipe(PROMPT, **call)
    return time.perf_counter() - start, time.process_time() - start_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=48)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument(
        "--height",
        type=int,
        default=160,
        help="pixels; video tokens per latent frame = (height/8) x (width/8)",
    )
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument(
        "--frames", type=int, default=9, help="video frames (4k+1); latent frames = (frames-1)/4 + 1"
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of each kind after one warm-up each"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (torch's default oversubscribes a shared machine)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    pipe = build_pipeline(args.layers, args.heads, args.head_dim)
    latent_frames = (args.frames - 1) // 4 + 1
    grid = (latent_frames, args.height // 8, args.width // 8)
    video_tokens = grid[0] * grid[1] * grid[2]
    sequence = TEXT_TOKENS + video_tokens
    hidden = args.heads * args.head_dim
    print(
        f"run: {args.layers} layers x {args.heads} heads x {args.head_dim} (hidden {hidden}), grid {grid} = "
        f"{video_tokens} video + {TEXT_TOKENS} text tokens, {args.steps} steps, CFG batch 2, "
        f"torch threads {torch.get_num_threads()}"
    )

    def new_recorder():
        return AttentionRecorder(
            tokens=WORDS, prompt=PROMPT, direction="both", branches=["cond"], memory_budget_bytes=1 << 30
        )

    timed_run(pipe, args, None)  # warm-ups: first-call allocations and kernel selection
    recorder = new_recorder()
    timed_run(pipe, args, recorder)
    plain_times, recorded_times = [], []
    for repeat in range(args.repeats):
        order = [None, "recorded"] if repeat % 2 == 0 else ["recorded", None]
        for kind in order:
            if kind is None:
                plain_times.append(timed_run(pipe, args, None))
            else:
                recorder = new_recorder()
                recorded_times.append(timed_run(pipe, args, recorder))
        print(
            f"  repeat {repeat}: plain {plain_times[-1][0]:.2f} s (cpu {plain_times[-1][1]:.2f} s), "
            f"recorded {recorded_times[-1][0]:.2f} s (cpu {recorded_times[-1][1]:.2f} s)"
        )

    for label, index in (("wall time", 0), ("process CPU time", 1)):
        plain = statistics.median(times[index] for times in plain_times)
        recorded = statistics.median(times[index] for times in recorded_times)
        print(
            f"{label} (median of {args.repeats}): plain {plain:.2f} s, recorded {recorded:.2f} s, "
            f"ratio {recorded / plain:.3f}x (goal <= 1.10x)"
        )

    record = recorder.record
    kept = recorder.peak_kept_bytes
    layer_steps = args.layers * args.steps
    # Full maps of the one recorded branch row, fp32: one N x N map per layer and step (x heads if kept).
    full_head_mean = layer_steps * sequence**2 * 4
    full_all_heads = full_head_mean * args.heads
    working = format_bytes(recorder.estimate.working_bytes)
    print(f"record: {record.describe()}")
    print(f"kept maps: {format_bytes(kept)} (+ probe working memory {working} during a call, then freed)")
    print(
        f"full maps of the same branch/layers/steps: {format_bytes(full_head_mean)} head-mean, "
        f"{format_bytes(full_all_heads)} with every head ({layer_steps} layer-steps x {sequence}^2 x 4 bytes "
        f"[x {args.heads} heads]); kept / full head-mean = {kept / full_head_mean:.2e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
