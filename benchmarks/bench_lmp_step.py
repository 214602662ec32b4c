"""Benchmark: one LMP denoising step (FBDM + RMTM, then + ASM) against a baseline CFG step, real-width layers.

A "step" is one transformer forward of the pipeline's batch, which is what LMP changes (the VAE and the
scheduler are untouched). Variants, timed side by side and interleaved in one process so machine load
hits them alike:

- ``baseline``: the CFG pair (2 rows), no attnkit;
- ``lmp``: attached with the reference branch (1 row, eq. 10 re-noising), FBDM and RMTM;
- ``lmp+asm``: the same plus ASM (``LMPConfig``'s default ``asm_cfg_rows``; ``--asm-cfg-rows`` sets it).

Each timed step uses the FBDM mask of a first, untimed step (the steady state of steps 1..fbdm_steps)
while FBDM accumulates its maps as usual. The floor is 1.5x: the reference branch adds one row to the CFG
pair. Peak memory is the max RSS of a fresh subprocess per variant (torch allocations are invisible to
tracemalloc); the extra over the baseline is printed.

    python benchmarks/bench_lmp_step.py [--video-tokens-side 20] [--frames 5] [--repeats 3]
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
from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed

import attnkit
from attnkit_lmp import ASM, FBDM, RMTM, LMPConfig, ReferenceBranch

HEADS, HEAD_DIM, TEXT_TOKENS, TEXT_DIM, LAYERS, CHANNELS = 48, 64, 226, 4096, 2, 16
SUBJECT_TOKENS = [3, 4]
VARIANTS = ("baseline", "lmp", "lmp+asm")


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
        RMTM(config.rmtm_lambda, config.rmtm_steps, fbdm=foreground),
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
    """Seconds of one step (FBDM accumulating, RMTM using ``mask``) and FBDM's new mask."""
    plugins = plugins_for(variant, reference, mask, asm_cfg_rows)
    start = time.perf_counter()
    with attnkit.attach(model, plugins=plugins, branches={"uncond": [0], "cond": [1]}):
        forward(model, inputs, 979.0)
    seconds = time.perf_counter() - start
    fbdm = next((plugin for plugin in plugins if isinstance(plugin, FBDM)), None)
    return seconds, (fbdm.mask if fbdm is not None else None)


def prime_mask(model, inputs, reference) -> torch.Tensor:
    """FBDM's mask after a first step (which uses all reference tokens); also warms the kernels up."""
    return timed_step(model, inputs, reference, "lmp")[1]


def peak_rss_child(args, variant: str) -> int:
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
    ]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)[
        "max_rss_bytes"
    ]


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
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    model, inputs, reference = build(args.video_tokens_side, args.frames)
    if args.child:
        mask = prime_mask(model, inputs, reference) if args.child != "baseline" else None
        timed_step(model, inputs, reference, args.child, mask, args.asm_cfg_rows)
        print(json.dumps({"max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
        return

    video_tokens = args.frames * args.video_tokens_side**2
    print(
        f"CogVideoX-width stack: {LAYERS} blocks, {HEADS} heads x {HEAD_DIM} (hidden {HEADS * HEAD_DIM}), "
        f"{video_tokens} video + {TEXT_TOKENS} text tokens, fp32 CPU, {torch.get_num_threads()} threads"
    )
    mask = prime_mask(model, inputs, reference)
    print(f"FBDM foreground in use: {100 * float(mask.float().mean()):.0f}% of the reference video tokens")
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            times[variant].append(timed_step(model, inputs, reference, variant, mask, args.asm_cfg_rows)[0])
    base = statistics.median(times["baseline"])
    print(
        "floor: 1.50x (the reference branch adds 1 row to the CFG pair of 2); "
        f"ASM moves the {args.asm_cfg_rows!r} CFG rows"
    )
    limits = {"baseline": "", "lmp": "  (target <= 1.6x)", "lmp+asm": "  (target <= 2.0x)"}
    for variant in VARIANTS:
        median = statistics.median(times[variant])
        runs = ", ".join(f"{t:.2f}" for t in times[variant])
        print(
            f"{variant:>8}: median {median:.3f} s  [{runs}]  "
            f"ratio {median / base:.2f}x baseline{limits[variant]}"
        )

    if args.no_memory:
        return
    rss = {variant: peak_rss_child(args, variant) for variant in VARIANTS}
    for variant in VARIANTS:
        extra = rss[variant] - rss["baseline"]
        print(
            f"peak RSS {variant:>8}: {rss[variant] / 2**20:.0f} MiB  "
            f"(extra over baseline {extra / 2**20:+.0f} MiB)"
        )
    full_map = HEADS * (TEXT_TOKENS + video_tokens) ** 2 * 4
    print(f"for scale: one full N x N map of one row is {full_map / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
