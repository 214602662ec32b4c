"""Benchmark: one LMP denoising step (FBDM + RMTM, then + ASM) against a baseline CFG step, real-width layers.

A "step" is one transformer forward of the pipeline's batch, which is what LMP changes (the VAE and the
scheduler are untouched). Variants, timed side by side and interleaved in one process so machine load
hits them alike:

- ``baseline``: the CFG pair (2 rows), no attnkit;
- ``lmp``: attached with the reference branch (1 row, eq. 10 re-noising), FBDM and RMTM;
- ``lmp-one-softmax``: the same with RMTM's one softmax over all keys (``keep_prompt_share=False``), which
  is one kernel call per target row where keeping the prompt's share is three;
- ``lmp+asm``: the same plus ASM (``LMPConfig``'s default ``asm_cfg_rows``; ``--asm-cfg-rows`` sets it).

Each timed step uses the FBDM mask of a first, untimed step (the steady state of steps 1..fbdm_steps)
while FBDM accumulates its maps as usual. The floor is 1.5x: the reference branch adds one row to the CFG
pair. Ratios are printed from the wall-clock minimum (other load only ever adds time), the wall median
and the CPU-time median. Peak memory: a fresh subprocess per variant samples its resident set size while
its steps run (torch allocations are invisible to tracemalloc); the growth over the built model and its
difference to the baseline's are printed.

    python benchmarks/bench_lmp_step.py [--video-tokens-side 20] [--frames 5] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed

import attnkit
from attnkit_lmp import ASM, FBDM, RMTM, LMPConfig, ReferenceBranch
from attnkit_lmp.families import CogVideoXFamily

HEADS, HEAD_DIM, TEXT_TOKENS, TEXT_DIM, LAYERS, CHANNELS = 48, 64, 226, 4096, 2, 16
SUBJECT_TOKENS = [3, 4]
VARIANTS = ("baseline", "lmp-one-softmax", "lmp", "lmp+asm")


def build(side: int, frames: int):
    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(
        num_attention_heads=HEADS,
        attention_head_dim=HEAD_DIM,
        in_channels=CHANNELS,
        out_channels=CHANNELS,
        num_layers=LAYERS,
        text_embed_dim=TEXT_DIM,
        sample_height=side * 2,
        sample_width=side * 2,
        sample_frames=(frames - 1) * 4 + 1,
        use_rotary_positional_embeddings=True,
    ).eval()
    model.requires_grad_(False)
    latent_shape = (1, frames, CHANNELS, side * 2, side * 2)
    inputs = dict(
        hidden_states=torch.randn(2, *latent_shape[1:]),
        encoder_hidden_states=torch.randn(2, TEXT_TOKENS, TEXT_DIM),
        image_rotary_emb=get_3d_rotary_pos_embed(HEAD_DIM, ((0, 0), (side, side)), (side, side), frames),
    )
    scheduler = CogVideoXDDIMScheduler(
        rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"
    )
    scheduler.set_timesteps(50)
    reference = dict(
        family=CogVideoXFamily(),
        noise=torch.randn(latent_shape),
        clean_latents=torch.randn(latent_shape),
        prompt_embeds=torch.randn(1, TEXT_TOKENS, TEXT_DIM),
        scheduler=scheduler,
    )
    return model, inputs, reference


class PrimedMask:
    """FBDM's mask from an earlier step, as RMTM reads it in the steady state (steps 1..fbdm_steps)."""

    def __init__(self, mask: torch.Tensor):
        self.indices = torch.nonzero(mask.flatten()).flatten()

    def foreground_indices(self) -> torch.Tensor:
        return self.indices


def plugins_for(variant: str, reference: dict, mask: torch.Tensor | None, asm_cfg_rows: str) -> list:
    if variant == "baseline":
        return []
    config = LMPConfig()
    fbdm = FBDM(SUBJECT_TOKENS, config.fbdm_steps, config.fg_threshold)
    foreground = PrimedMask(mask) if mask is not None else fbdm
    plugins = [
        ReferenceBranch(**reference),
        fbdm,
        RMTM(config.rmtm_lambda, config.rmtm_steps, fbdm=foreground, keep_prompt_share=variant != "lmp-one-softmax"),
    ]
    if variant == "lmp+asm":
        plugins.append(
            ASM(
                SUBJECT_TOKENS,
                config.asm_eta,
                config.asm_steps,
                config.asm_top_fraction,
                cfg_rows=asm_cfg_rows,
                chunk_size=config.asm_chunk_size,
            )
        )
    return plugins


def forward(model, inputs, timestep: float):
    with torch.no_grad():
        return model(**inputs, timestep=torch.tensor([timestep, timestep]), return_dict=False)[0]


def timed_step(
    model, inputs, reference, variant: str, mask: torch.Tensor | None = None, asm_cfg_rows: str = "cond"
):
    """Wall and CPU seconds of one step (FBDM accumulating, RMTM using ``mask``), and FBDM's new mask."""
    plugins = plugins_for(variant, reference, mask, asm_cfg_rows)
    wall, cpu = time.perf_counter(), time.process_time()
    with attnkit.attach(model, plugins=plugins, branches={"uncond": [0], "cond": [1]}):
        forward(model, inputs, 979.0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    fbdm = next((plugin for plugin in plugins if isinstance(plugin, FBDM)), None)
    return wall, cpu, (fbdm.mask if fbdm is not None else None)


def prime_mask(model, inputs, reference) -> torch.Tensor:
    """FBDM's mask after a first step (which uses all reference tokens); also warms the kernels up."""
    return timed_step(model, inputs, reference, "lmp")[2]


class PeakRSS:
    """The highest resident set size while the block runs, sampled every few milliseconds from /proc."""

    def __enter__(self):
        self.start = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory_child(args, variant: str) -> dict:
    """In a fresh process: RSS after building, and the peak while running the variant's steps."""
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--video-tokens-side",
        str(args.video_tokens_side),
        "--frames",
        str(args.frames),
        "--asm-cfg-rows",
        args.asm_cfg_rows,
        "--threads",
        str(args.threads),
    ]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video-tokens-side", type=int, default=20, help="latent tokens per side after patching"
    )
    parser.add_argument("--frames", type=int, default=5, help="latent frames")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--asm-cfg-rows",
        choices=["both", "cond"],
        default=LMPConfig().asm_cfg_rows,
        help="CFG rows ASM moves",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (torch's default oversubscribes a shared machine)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, inputs, reference = build(args.video_tokens_side, args.frames)
    if args.child:
        # The first LMP step (mask = all reference tokens) is RMTM's widest, so both steps are measured.
        with PeakRSS() as rss:
            mask = prime_mask(model, inputs, reference) if args.child != "baseline" else None
            timed_step(model, inputs, reference, args.child, mask, args.asm_cfg_rows)
        print(json.dumps({"before": rss.start, "peak": rss.peak}))
        return

    video_tokens = args.frames * args.video_tokens_side**2
    print(
        f"CogVideoX-width stack: {LAYERS} blocks, {HEADS} heads x {HEAD_DIM} (hidden {HEADS * HEAD_DIM}), "
        f"{video_tokens} video + {TEXT_TOKENS} text tokens, fp32 CPU, {torch.get_num_threads()} threads"
    )
    mask = prime_mask(model, inputs, reference)
    timed_step(model, inputs, reference, "baseline")  # warm-up
    print(f"FBDM foreground in use: {100 * float(mask.float().mean()):.0f}% of the reference video tokens")
    wall: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            seconds, cpu_seconds, _ = timed_step(model, inputs, reference, variant, mask, args.asm_cfg_rows)
            wall[variant].append(seconds)
            cpu[variant].append(cpu_seconds)
    print(
        "floor: 1.50x (the reference branch adds 1 row to the CFG pair of 2); "
        f"ASM moves the {args.asm_cfg_rows!r} CFG rows; {args.repeats} interleaved repeats"
    )
    print(
        "ratios to the baseline step: wall-clock min (least disturbed by other load), wall median, "
        "CPU-time median"
    )
    limits = {"lmp": "  target <= 1.6x", "lmp+asm": "  target <= 2.0x"}
    for variant in VARIANTS:
        runs = ", ".join(f"{t:.2f}" for t in wall[variant])
        print(
            f"{variant:>15}: wall [{runs}] s  "
            f"min {min(wall[variant]) / min(wall['baseline']):.2f}x  "
            f"median {statistics.median(wall[variant]) / statistics.median(wall['baseline']):.2f}x  "
            f"cpu {statistics.median(cpu[variant]) / statistics.median(cpu['baseline']):.2f}x"
            f"{limits.get(variant, '')}"
        )

    if args.no_memory:
        return
    memory = {variant: memory_child(args, variant) for variant in VARIANTS}
    base_extra = memory["baseline"]["peak"] - memory["baseline"]["before"]
    for variant in VARIANTS:
        step_extra = memory[variant]["peak"] - memory[variant]["before"]
        print(
            f"peak RSS during the step(s) {variant:>15}: +{step_extra / 2**20:.0f} MiB over the built model "
            f"({(step_extra - base_extra) / 2**20:+.0f} MiB vs baseline)"
        )
    full_map = HEADS * (TEXT_TOKENS + video_tokens) ** 2 * 4
    print(f"for scale: one full N x N attention map of one row is {full_map / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
