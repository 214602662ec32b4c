"""GPU check: one real-width CogVideoX stack at the real token count, timed and measured in one run.

CogVideoX-5B width (48 heads x 64, hidden 3072) with 2 blocks, 226 text + 17,550 video tokens (49 frames
at 480 x 720), bf16 on CUDA. In one process, interleaved: vanilla, attached with no plugins, a probe of
2 subject tokens in both directions, an LMP step (reference row + FBDM + RMTM) and LMP + ASM. For each:
median time over the repeats, peak CUDA memory above the built model, and ratios to vanilla. Before
timing it checks the fused log-sum-exp path: the attached output equals the vanilla one bit for bit,
and the kernel's log-sum-exp equals the blocked one. Writes everything to one JSON file.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--repeats 3]      # on a GPU, a few minutes
    python benchmarks/gpu_check.py --device cpu --tiny                       # its logic, here, in seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed

import attnkit
from attnkit.kernel import chunked_logsumexp, sdpa, sdpa_with_logsumexp
from attnkit_lmp import ASM, FBDM, RMTM, LMPConfig, ReferenceBranch

SUBJECT_TOKENS = [3, 4]
VARIANTS = ("vanilla", "attached", "probe", "lmp", "lmp+asm")
FULL = dict(heads=48, head_dim=64, text=226, text_dim=4096, frames=13, height=60, width=90, layers=2)
TINY = dict(heads=2, head_dim=16, text=8, text_dim=32, frames=2, height=8, width=8, layers=2)


class SubjectProbe:
    name = "gpu-check.probe"

    @attnkit.hookimpl
    def attnkit_attention_output(self, call):
        call.attention_probs(SUBJECT_TOKENS, "video")
        call.attention_probs("video", SUBJECT_TOKENS)


class PrimedMask:
    """FBDM's mask from an earlier step, as RMTM reads it in the steady state."""

    def __init__(self, mask):
        self.indices = torch.nonzero(mask.flatten()).flatten()

    def foreground_indices(self):
        return self.indices


def build(size: dict, device: str, dtype: torch.dtype):
    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(
        num_attention_heads=size["heads"], attention_head_dim=size["head_dim"], in_channels=16, out_channels=16,
        num_layers=size["layers"], text_embed_dim=size["text_dim"], sample_height=size["height"],
        sample_width=size["width"], sample_frames=(size["frames"] - 1) * 4 + 1,
        use_rotary_positional_embeddings=True, max_text_seq_length=size["text"],
    ).to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    grid = (size["height"] // 2, size["width"] // 2)
    rotary = get_3d_rotary_pos_embed(size["head_dim"], ((0, 0), grid), grid, size["frames"])
    latent = (1, size["frames"], 16, size["height"], size["width"])
    inputs = dict(
        hidden_states=torch.randn(2, *latent[1:], device=device, dtype=dtype),
        encoder_hidden_states=torch.randn(2, size["text"], size["text_dim"], device=device, dtype=dtype),
        image_rotary_emb=tuple(r.to(device) for r in rotary),
    )
    scheduler = CogVideoXDDIMScheduler(
        rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"
    )
    scheduler.set_timesteps(50)
    reference = dict(
        noise=torch.randn(latent, device=device, dtype=dtype),
        clean_latents=torch.randn(latent, device=device, dtype=dtype),
        prompt_embeds=torch.randn(1, size["text"], size["text_dim"], device=device, dtype=dtype),
        scheduler=scheduler,
    )
    return model, inputs, reference


def plugins_for(variant: str, reference: dict, mask) -> list:
    if variant in ("vanilla", "attached"):
        return []
    if variant == "probe":
        return [SubjectProbe()]
    config = LMPConfig()
    fbdm = FBDM(SUBJECT_TOKENS, config.fbdm_steps, config.fg_threshold)
    foreground = PrimedMask(mask) if mask is not None else fbdm
    plugins = [ReferenceBranch(**reference), fbdm, RMTM(config.rmtm_lambda, config.rmtm_steps, fbdm=foreground)]
    if variant == "lmp+asm":
        plugins.append(
            ASM(
                SUBJECT_TOKENS, config.asm_eta, config.asm_steps, config.asm_top_fraction,
                cfg_rows=config.asm_cfg_rows, chunk_size=config.asm_chunk_size,
            )
        )
    return plugins


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step(model, inputs, reference, variant: str, device: str, mask=None):
    """(seconds, peak bytes above what was allocated before, output, FBDM mask) of one transformer forward."""
    plugins = plugins_for(variant, reference, mask)
    timestep = torch.tensor([979.0, 979.0], device=device)
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if device == "cuda" else 0
    start = time.perf_counter()
    with torch.no_grad():
        if variant == "vanilla":
            output = model(**inputs, timestep=timestep, return_dict=False)[0]
        else:
            with attnkit.attach(model, plugins=plugins, branches={"uncond": [0], "cond": [1]}):
                output = model(**inputs, timestep=timestep, return_dict=False)[0]
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() - before if device == "cuda" else 0
    fbdm = next((plugin for plugin in plugins if isinstance(plugin, FBDM)), None)
    return seconds, peak, output, (fbdm.mask if fbdm is not None else None)


def check_logsumexp(size: dict, device: str, dtype: torch.dtype) -> dict:
    """The fused path against plain SDPA (bit for bit) and the blocked log-sum-exp, at the check's size."""
    tokens = size["text"] + size["frames"] * (size["height"] // 2) * (size["width"] // 2)
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (2, 4, tokens, size["head_dim"])
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=generator) for _ in range(3))
    output, logsumexp = sdpa_with_logsumexp(q, k, v)
    blocked = chunked_logsumexp(q, k)
    return {
        "backend": int(torch._fused_sdp_choice(q, k, v)),
        "output_bit_identical_to_sdpa": bool(torch.equal(output, sdpa(q, k, v))),
        "logsumexp_max_abs_difference_to_blocked": float((logsumexp.float() - blocked.float()).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="a tiny size, to check the script's logic on a CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(
            "--device cuda: no CUDA device is visible to torch; run on a GPU machine, or pass --device cpu --tiny"
        )
    size = TINY if args.tiny else FULL
    dtype = torch.bfloat16
    tokens = size["text"] + size["frames"] * (size["height"] // 2) * (size["width"] // 2)
    print(
        f"CogVideoX stack: {size['layers']} blocks, {size['heads']} heads x {size['head_dim']}, {tokens} tokens, "
        f"bf16 on {args.device}, {torch.get_num_threads()} torch thread(s), {args.repeats} repeats"
    )
    result = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor(),
        "tokens": tokens, "size": size, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "logsumexp_check": check_logsumexp(size, args.device, dtype),
    }
    model, inputs, reference = build(size, args.device, dtype)
    _, _, vanilla_output, _ = step(model, inputs, reference, "vanilla", args.device)
    _, _, attached_output, _ = step(model, inputs, reference, "probe", args.device)
    result["probe_output_bit_identical_to_vanilla"] = bool(torch.equal(vanilla_output, attached_output))
    _, _, _, mask = step(model, inputs, reference, "lmp", args.device)  # FBDM's first mask; warms up too
    result["foreground_share"] = float(mask.float().mean())
    seconds = {variant: [] for variant in VARIANTS}
    peaks = {variant: 0 for variant in VARIANTS}
    for repeat in range(args.repeats):
        for variant in VARIANTS[repeat % len(VARIANTS):] + VARIANTS[: repeat % len(VARIANTS)]:
            elapsed, peak, _, _ = step(model, inputs, reference, variant, args.device, mask)
            seconds[variant].append(elapsed)
            peaks[variant] = max(peaks[variant], peak)
    base = statistics.median(seconds["vanilla"])
    result["variants"] = {}
    for variant in VARIANTS:
        median = statistics.median(seconds[variant])
        result["variants"][variant] = {
            "seconds": seconds[variant], "median_s": median, "ratio_to_vanilla": median / base,
            "peak_bytes_above_model": peaks[variant],
            "peak_ratio_to_vanilla": peaks[variant] / peaks["vanilla"] if peaks["vanilla"] else None,
        }
        print(
            f"{variant:>8}: median {median:.3f} s = {median / base:.2f}x vanilla; peak "
            f"{peaks[variant] / 2**30:.2f} GiB above the model"
        )
    print(
        f"log-sum-exp check: {result['logsumexp_check']}; "
        f"probe bit-identical: {result['probe_output_bit_identical_to_vanilla']}"
    )
    with open(args.out, "w") as file:
        json.dump(result, file, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
