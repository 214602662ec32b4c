"""Memory model: peak bf16 memory and FLOPs of a baseline CFG step, an LMP step and an LMP step with ASM.

Real transformer configs (CogVideoX-5B, Wan 2.1 14B, HunyuanVideo) are built on the meta device, so no
weight is allocated and nothing is computed. What is measured and what is derived:

- weights: every parameter of the full model, in bf16;
- activations of one step: a forward of the model with its real width and token count but only one
  block of each kind, under a dispatch mode that adds each new tensor's bytes while any tensor on its
  storage is alive (under ``no_grad`` one block's transients are the step's peak: a block frees them
  before the next starts). Attention is accounted as a fused kernel (flash attention on a GPU: output
  and log-sum-exp only), which is what SDPA runs on a GPU;
- LMP adds a reference row (batch 3 instead of 2), measured the same way, plus RMTM's extra K/V for the
  target rows (``foreground`` share of the video tokens) and the probe's log-sum-exp, from the shapes
  ``attnkit.kernel.attention_with_extras`` allocates;
- ASM adds, in one layer at a time, the autograd graph of one target row's projection (about ten
  tokens x hidden tensors, counted from its shapes) and one score block of the chunked log-sum-exp
  (``attnkit.kernel.DEVICE_BLOCK_ELEMENTS``), which is its path off the CPU.

FLOPs come from ``FlopCounterMode`` on the same one-block forward, scaled by the block count.
``--check`` compares the accounting with a real CPU allocation peak (allocator-level tracker) at a
reduced size that runs here.

    python benchmarks/memory_model.py [--check] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import weakref
from contextlib import contextmanager
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from attnkit import kernel

CARDS_GB = (24, 48, 80, 96)
GB = 1e9


class LiveBytes(TorchDispatchMode):
    """Bytes of tensors created inside the mode that are still alive, and their peak (meta or real)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._storages: dict[int, list] = {}  # storage id -> [bytes, tensors alive on it]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        # Storages of tensors made before the mode (weights, inputs) are not the step's: a view of a
        # weight (a linear layer's transpose) must not count the weight again.
        outside = {t.untyped_storage()._cdata for t in inputs} - self._storages.keys()
        identities = {id(t) for t in inputs}
        result = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(result):
            if isinstance(tensor, torch.Tensor) and id(tensor) not in identities:
                self._track(tensor, outside)
        return result

    def _track(self, tensor: torch.Tensor, outside: set[int]) -> None:
        key = tensor.untyped_storage()._cdata
        if key in outside:
            return
        entry = self._storages.get(key)
        if entry is None:
            entry = self._storages[key] = [tensor.untyped_storage().nbytes(), 0]
            self.live += entry[0]
            self.peak = max(self.peak, self.live)
        entry[1] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]


def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """SDPA as a fused kernel allocates it (output and log-sum-exp), for the meta device's accounting."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, attn_mask=attn_mask, scale=scale
    )[0]


def _flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    batch, heads, queries, dim = query_shape
    return 4 * batch * heads * queries * key_shape[-2] * dim


@contextmanager
def fused_attention_on_meta():
    with mock.patch.object(F, "scaled_dot_product_attention", _fused_sdpa):
        yield


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(
        display=False,
        custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _flash_flops},
    )


# --- the three model families: config, geometry, inputs --------------------------------------------------


def cogvideox():
    from diffusers import CogVideoXTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    config = dict(
        num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, num_layers=42,
        text_embed_dim=4096, time_embed_dim=512, sample_width=90, sample_height=60, sample_frames=49,
        use_rotary_positional_embeddings=True, max_text_seq_length=226,
    )
    frames, height, width, text = 13, 60, 90, 226  # 49 frames at 480 x 720

    def inputs(batch, device):
        rotary = get_3d_rotary_pos_embed(64, ((0, 0), (height // 2, width // 2)), (height // 2, width // 2), frames)
        return dict(
            hidden_states=torch.empty(batch, frames, 16, height, width, device=device),
            encoder_hidden_states=torch.empty(batch, text, 4096, device=device),
            timestep=torch.zeros(batch, device=device),
            image_rotary_emb=tuple(r.to(device) for r in rotary),
        )

    tokens = text + frames * (height // 2) * (width // 2)
    return dict(
        name="CogVideoX-5B", cls=CogVideoXTransformer3DModel, config=config, one_block={"num_layers": 1},
        blocks=42, inputs=inputs, tokens=tokens, video_tokens=tokens - text, heads=48, head_dim=64,
        geometry="49 frames, 480 x 720", attention_calls=42,
    )


def wan():
    from diffusers import WanTransformer3DModel

    config = dict(
        patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
    )
    frames, height, width, text = 21, 60, 104, 512  # 81 frames at 480 x 832

    def inputs(batch, device):
        return dict(
            hidden_states=torch.empty(batch, 16, frames, height, width, device=device),
            encoder_hidden_states=torch.empty(batch, text, 4096, device=device),
            timestep=torch.zeros(batch, device=device),
        )

    video = frames * (height // 2) * (width // 2)
    return dict(
        name="Wan 2.1 14B", cls=WanTransformer3DModel, config=config, one_block={"num_layers": 1}, blocks=40,
        inputs=inputs, tokens=video, video_tokens=video, heads=40, head_dim=128,
        geometry="81 frames, 480 x 832", attention_calls=40, asm_keys=text,  # ASM runs on the cross call
    )


def hunyuan():
    from diffusers import HunyuanVideoTransformer3DModel

    config = dict(
        in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128, num_layers=20,
        num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
        qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768,
        rope_theta=256.0, rope_axes_dim=(16, 56, 56),
    )
    frames, height, width, text = 33, 68, 120, 256  # 129 frames at 544 x 960

    def inputs(batch, device):
        return dict(
            hidden_states=torch.empty(batch, 16, frames, height, width, device=device),
            encoder_hidden_states=torch.empty(batch, text, 4096, device=device),
            encoder_attention_mask=torch.ones(batch, text, device=device),
            pooled_projections=torch.empty(batch, 768, device=device),
            timestep=torch.zeros(batch, device=device),
            guidance=torch.zeros(batch, device=device),
        )

    video = frames * (height // 2) * (width // 2)
    return dict(
        name="HunyuanVideo", cls=HunyuanVideoTransformer3DModel, config=config,
        one_block={"num_layers": 1, "num_single_layers": 1}, blocks=60, inputs=inputs, tokens=video + text,
        video_tokens=video, heads=24, head_dim=128, geometry="129 frames, 544 x 960", attention_calls=60,
    )


FAMILIES = {"cogvideox": cogvideox, "wan": wan, "hunyuan": hunyuan}


# --- accounting -----------------------------------------------------------------------------------------


def weight_bytes(family) -> int:
    with torch.device("meta"):
        model = family["cls"](**family["config"])
    return sum(parameter.numel() for parameter in model.parameters()) * 2  # bf16


def one_block_step(family, batch: int, device="meta", dtype=torch.bfloat16):
    """(activation peak bytes, FLOPs of the one-block model, block count in that model) of one forward."""
    config = {**family["config"], **family["one_block"]}
    with torch.device(device):
        model = family["cls"](**config).to(dtype).eval()
    inputs = {
        name: value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value
        for name, value in family["inputs"](batch, device).items()
    }
    inputs = {
        name: tuple(v.to(dtype) for v in value) if isinstance(value, tuple) else value
        for name, value in inputs.items()
    }
    live, flops = LiveBytes(), flop_counter()
    with torch.no_grad(), fused_attention_on_meta(), flops, live:
        model(**inputs, return_dict=False)
    return live.peak, flops.get_total_flops(), sum(family["one_block"].values())


def lmp_extra_bytes(family, foreground: float, bytes_per: int = 2) -> int:
    """RMTM's extra K/V and the probe's log-sum-exp in one attention call, as ``attention_with_extras``
    allocates them: per target row a copy of its video queries, the concatenated keys and values
    (own + foreground) and the output; the call's output buffer; the log-sum-exp (fp32)."""
    heads, dim, tokens, video = family["heads"], family["head_dim"], family["tokens"], family["video_tokens"]
    extra = int(foreground * video)
    per_row = heads * dim * (2 * video + 2 * (tokens + extra)) * bytes_per
    return per_row + 3 * heads * tokens * dim * bytes_per + 3 * heads * tokens * 4


def asm_extra_bytes(family, bytes_per: int = 2, block_elements: int = kernel.DEVICE_BLOCK_ELEMENTS) -> int:
    """ASM in one layer: the target row's projection graph (hidden states, q, k, v, their grads: about 10
    (tokens x hidden) tensors) and one score block of the chunked log-sum-exp (scores + fp32 copy; on a
    CPU the fused kernel needs none: pass ``block_elements=0``)."""
    hidden = family["heads"] * family["head_dim"]
    graph = 10 * family["tokens"] * hidden * bytes_per
    scores = family["heads"] * family["video_tokens"] * family.get("asm_keys", family["tokens"])
    block = min(block_elements, scores) * (bytes_per + 4)
    return graph + block


def asm_flops(family) -> int:
    """One target row: the log-sum-exp over all keys forward (one matmul: q k^T) and backward
    (recompute + dq + dk: 3), plus the projection's forward and backward (3x its 3 matmuls)."""
    heads, dim, tokens, video = family["heads"], family["head_dim"], family["tokens"], family["video_tokens"]
    hidden = heads * dim
    attention = 2 * heads * video * family.get("asm_keys", tokens) * dim * (1 + 3)
    projection = 3 * (3 * 2 * tokens * hidden * hidden) + 3 * 2 * tokens * hidden * hidden  # + the reference row
    return attention + projection


def model_family(name: str, foreground: float) -> dict:
    family = FAMILIES[name]()
    weights = weight_bytes(family)
    base_peak, base_flops, counted = one_block_step(family, batch=2)
    lmp_peak, lmp_flops, _ = one_block_step(family, batch=3)
    scale = family["blocks"] / counted
    extra_keys = int(foreground * family["video_tokens"])
    extra_keys_flops = 4 * 2 * family["heads"] * family["video_tokens"] * extra_keys * family["head_dim"]
    return dict(
        family=family,
        weights=weights,
        baseline=weights + base_peak,
        lmp=weights + lmp_peak + lmp_extra_bytes(family, foreground),
        lmp_asm=weights + lmp_peak + lmp_extra_bytes(family, foreground) + asm_extra_bytes(family),
        baseline_flops=base_flops * scale,
        lmp_flops=lmp_flops * scale + extra_keys_flops * family["attention_calls"],
        asm_flops=asm_flops(family) * family["attention_calls"],
        full_map=3 * family["heads"] * family["tokens"] ** 2 * 2,
    )


def fits(total_bytes: float, weights: float) -> str:
    """The smallest of the cards it fits (95 % usable), and in parentheses with the weights offloaded
    to the CPU (model CPU offload keeps one block's weights on the card; counted here as none)."""
    cards = [card for card in CARDS_GB if total_bytes <= card * GB * 0.95]
    offload = [card for card in CARDS_GB if total_bytes - weights <= card * GB * 0.95]
    text = f"{min(cards)}" if cards else "none"
    if offload and (not cards or min(offload) < min(cards)):
        text += f" ({min(offload)} offloaded)"
    return text


def check(threads: int, foreground: float) -> None:
    """The accounting against the real CPU allocator, at a reduced CogVideoX size that runs here (fp32):
    the baseline step's peak (meta accounting) and the LMP and LMP + ASM steps' (meta accounting plus the
    formulas above), each against an attached run's allocator peak."""
    import attnkit
    from attnkit.testing.allocations import track_allocations
    from attnkit_lmp import ASM, FBDM, RMTM, ReferenceBranch
    from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    heads, text, frames, side = 4, 32, 5, 32
    config = dict(
        num_attention_heads=heads, attention_head_dim=64, in_channels=16, out_channels=16, num_layers=1,
        text_embed_dim=256, time_embed_dim=64, sample_width=side, sample_height=side, sample_frames=17,
        use_rotary_positional_embeddings=True, max_text_seq_length=text,
    )
    video = frames * (side // 2) ** 2
    family = dict(heads=heads, head_dim=64, tokens=text + video, video_tokens=video)

    def inputs(batch, device):
        rotary = get_3d_rotary_pos_embed(64, ((0, 0), (side // 2, side // 2)), (side // 2, side // 2), frames)
        return dict(
            hidden_states=torch.randn(batch, frames, 16, side, side).to(device),
            encoder_hidden_states=torch.randn(batch, text, 256).to(device),
            timestep=torch.zeros(batch).to(device),
            image_rotary_emb=tuple(r.to(device) for r in rotary),
        )

    def meta_peak(batch):
        with torch.device("meta"):
            meta_model = CogVideoXTransformer3DModel(**config).eval()
        live = LiveBytes()
        with torch.no_grad(), fused_attention_on_meta(), live:
            meta_model(**inputs(batch, "meta"), return_dict=False)
        return live.peak

    torch.manual_seed(0)
    model = CogVideoXTransformer3DModel(**config).eval().requires_grad_(False)
    scheduler = CogVideoXDDIMScheduler(
        rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"
    )
    scheduler.set_timesteps(50)
    latent = (1, frames, 16, side, side)
    reference = dict(
        noise=torch.randn(latent), clean_latents=torch.randn(latent), prompt_embeds=torch.randn(1, text, 256),
        scheduler=scheduler,
    )

    class Foreground:
        def foreground_indices(self):
            return torch.arange(0, video, round(1 / foreground))

    def real_peak(plugins):
        real_inputs = inputs(2, "cpu")
        with torch.no_grad(), track_allocations() as allocations:
            if plugins is None:
                model(**real_inputs, return_dict=False)
            else:
                with attnkit.attach(model, plugins=plugins, branches={"uncond": [0], "cond": [1]}):
                    model(**real_inputs, return_dict=False)
        return allocations.peak

    def lmp_plugins(asm: bool):
        plugins = [ReferenceBranch(**reference), FBDM([3, 4]), RMTM(fbdm=Foreground())]
        return plugins + [ASM([3, 4])] if asm else plugins

    lmp_model = meta_peak(3) + lmp_extra_bytes(family, foreground, bytes_per=4)
    rows = [
        ("baseline", real_peak(None), meta_peak(2)),
        ("LMP", real_peak(lmp_plugins(False)), lmp_model),
        ("LMP + ASM", real_peak(lmp_plugins(True)), lmp_model + asm_extra_bytes(family, 4, block_elements=0)),
    ]
    print(
        f"check: CogVideoX width {heads} x 64, 1 block, {text + video} tokens, fp32 CPU, {threads} thread(s); "
        "activation peak above the weights, real allocator vs this accounting:"
    )
    for name, real, modelled in rows:
        print(
            f"  {name:>9}: real {real / 2**20:7.1f} MiB, modelled {modelled / 2**20:7.1f} MiB "
            f"(ratio {modelled / real:.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--foreground", type=float, default=0.3, help="FBDM foreground share of video tokens")
    parser.add_argument("--check", action="store_true", help="compare with a real allocation peak here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); bf16; foreground {args.foreground:.0%}")
    if args.check:
        check(args.threads, args.foreground)
    print(
        "| model | tokens | weights | baseline step | LMP step | LMP + ASM | smallest card, GB "
        "(baseline / LMP / LMP+ASM) | TFLOPs baseline / LMP / +ASM | FLOP ratio LMP / +ASM |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.families:
        row = model_family(name, args.foreground)
        family = row["family"]
        lmp_total = row["lmp_flops"]
        asm_total = lmp_total + row["asm_flops"]
        print(
            f"| {family['name']} ({family['geometry']}) | {family['tokens']:,} | {row['weights'] / GB:.1f} GB | "
            f"{row['baseline'] / GB:.1f} GB | {row['lmp'] / GB:.1f} GB | {row['lmp_asm'] / GB:.1f} GB | "
            f"{fits(row['baseline'], row['weights'])} / {fits(row['lmp'], row['weights'])} / "
            f"{fits(row['lmp_asm'], row['weights'])} | "
            f"{row['baseline_flops'] / 1e12:.0f} / {lmp_total / 1e12:.0f} / {asm_total / 1e12:.0f} | "
            f"{lmp_total / row['baseline_flops']:.2f}x / {asm_total / row['baseline_flops']:.2f}x |"
        )
        print(f"|  | one N x N map of the LMP batch (bf16): {row['full_map'] / GB:.0f} GB |||||||| ")


if __name__ == "__main__":
    main()
