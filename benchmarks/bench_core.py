"""Benchmark: cost of attaching attnkit, and of probing attention maps, on a real-width CogVideoX layer stack.

Runs, side by side in one process and interleaved (so machine load hits all variants alike):
vanilla forward, attached with no plugins, attached with a probe of 2 subject tokens in both
directions (head-mean). Then measures peak memory (max RSS) of the vanilla and probe variants in
fresh subprocesses and compares the probe's extra memory with what one full N x N map would take.

    python benchmarks/bench_core.py [--video-tokens-side 20] [--frames 5] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed

import attnkit

HEADS, HEAD_DIM, TEXT_TOKENS, LAYERS = 48, 64, 226, 2


def build(side: int, frames: int):
    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        in_channels=16,
        out_channels=16,
        num_layers=LAYERS,
        text_embed_dim=4096,
        sample_height=side * 2,
        sample_width=side * 2,
        sample_frames=(frames - 1) * 4 + 1,
        use_rotary_positional_embeddings=True,
    ).eval()
    inputs = dict(
        hidden_states=torch.randn(2, frames, 16, side * 2, side * 2),
        encoder_hidden_states=torch.randn(2, TEXT_TOKENS, 4096),
        image_rotary_emb=get_3d_rotary_pos_embed(HEAD_DIM, ((0, 0), (side, side)), (side, side), frames),
    )
    return model, inputs


class SubjectProbe:
    """Reads the two FBDM blocks for 2 subject tokens, head-mean, in every layer."""

    name = "subject-probe"

    @attnkit.hookimpl
    def attnkit_attention_output(self, call):
        subject = [3, 4]
        text_to_video = call.attention_probs(subject, "video")
        video_to_text = call.attention_probs("video", subject)
        self.last = text_to_video.sum(1) + video_to_text.sum(2)


def forward(model, inputs, timestep: float):
    with torch.no_grad():
        return model(**inputs, timestep=torch.tensor([timestep, timestep]), return_dict=False)[0]


def timed(model, inputs, variant: str, timestep: float) -> tuple[float, float]:
    """(wall seconds, process CPU seconds): CPU time is steadier when other jobs share the machine."""
    start, start_cpu = time.perf_counter(), time.process_time()
    if variant == "vanilla":
        forward(model, inputs, timestep)
    else:
        plugins = [SubjectProbe()] if variant == "probe" else []
        with attnkit.attach(model, plugins=plugins):
            forward(model, inputs, timestep)
    return time.perf_counter() - start, time.process_time() - start_cpu


def peak_rss_child(args, variant: str) -> int:
    command = [sys.executable, __file__, "--child", variant, "--video-tokens-side", str(args.video_tokens_side),
               "--frames", str(args.frames), "--threads", str(args.threads)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["max_rss_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video-tokens-side", type=int, default=20, help="latent tokens per side after patching")
    parser.add_argument("--frames", type=int, default=5, help="latent frames")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (torch's default oversubscribes a shared machine)"
    )
    parser.add_argument("--child", choices=["vanilla", "probe"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, inputs = build(args.video_tokens_side, args.frames)
    if args.child:
        timed(model, inputs, args.child, 500.0)
        print(json.dumps({"max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
        return

    tokens = TEXT_TOKENS + args.frames * args.video_tokens_side**2
    print(f"CogVideoX-width stack: {LAYERS} blocks, {HEADS} heads x {HEAD_DIM}, batch 2 (CFG pair), "
          f"{tokens} tokens ({TEXT_TOKENS} text), fp32, {torch.get_num_threads()} threads")
    variants = ["vanilla", "attached", "probe"]
    timed(model, inputs, "vanilla", 999.0)  # warm-up
    times = {variant: [] for variant in variants}
    for repeat in range(args.repeats):
        # Rotate the order each round so no variant always runs first after a load change.
        for variant in variants[repeat % 3 :] + variants[: repeat % 3]:
            times[variant].append(timed(model, inputs, variant, 900.0 - repeat))
    base_wall = statistics.median(wall for wall, _ in times["vanilla"])
    base_cpu = statistics.median(cpu for _, cpu in times["vanilla"])
    for variant in variants:
        wall = statistics.median(wall for wall, _ in times[variant])
        cpu = statistics.median(cpu for _, cpu in times[variant])
        print(f"{variant:>9}: median wall {wall:.3f} s ({wall / base_wall:.3f}x vanilla), "
              f"CPU {cpu:.3f} s ({cpu / base_cpu:.3f}x vanilla) over {args.repeats}")

    vanilla_rss, probe_rss = peak_rss_child(args, "vanilla"), peak_rss_child(args, "probe")
    full_map = 2 * HEADS * tokens * tokens * 4
    extra = max(probe_rss - vanilla_rss, 0)
    print(f"peak RSS vanilla {vanilla_rss / 2**20:.0f} MiB, probe {probe_rss / 2**20:.0f} MiB: "
          f"extra {extra / 2**20:.1f} MiB = {100 * extra / full_map:.2f}% of one full N x N map "
          f"({full_map / 2**20:.0f} MiB for the batch)")


if __name__ == "__main__":
    main()
