"""Tiny random-weight LTX-Video pipelines (text-to-video and image-to-video) built from configs (no downloads).

LTX-Video has no joint attention. Each block ``transformer_blocks.N`` runs video self-attention (``attn1``,
RoPE on q and k) and cross-attention from video queries to the text (``attn2``), which masks the padded
text keys. The transformer takes its latents packed into a token sequence ``(B, tokens, channels)`` with
the latent grid as separate ``num_frames``/``height``/``width`` arguments. The text encoder is a random T5
and the tokenizer the word-level tokenizer of :mod:`attnkit.testing.tokenizer`.

Default geometry (``LTX_CALL_KWARGS``)::

    pipe = tiny_ltx_pipeline("t2v")
    out = pipe("a red dog runs", height=32, width=32, num_frames=9, num_inference_steps=2,
               max_sequence_length=16, guidance_scale=3.0, output_type="pt",
               generator=torch.Generator().manual_seed(0))
    out.frames.shape  # (1, 9, 3, 32, 32)

The VAE compresses space by 4 and time by 4: 32 x 32 px, 9 frames -> 3 latent frames of 8 x 8, patch 1 ->
a (3, 8, 8) grid of 192 video tokens. With guidance the pipeline runs one forward per step with the
negative prompt's row first (``uncond``, then ``cond``). ``tiny_ltx_pipeline("i2v")`` is
``LTXImageToVideoPipeline``: the image's latent is the first latent frame, kept clean by a per-token
timestep of 0.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXImageToVideoPipeline,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)

from attnkit.testing.tiny_models import tiny_t5_encoder
from attnkit.testing.tokenizer import DEFAULT_WORDS, build_word_tokenizer

Variant = Literal["t2v", "i2v"]

LTX_HEIGHT = 32
LTX_WIDTH = 32
LTX_NUM_FRAMES = 9
LTX_TEXT_LEN = 16
LTX_GRID = (3, 8, 8)
LATENT_CHANNELS = 8
TEXT_EMBED_DIM = 16

LTX_CALL_KWARGS: dict = {
    "height": LTX_HEIGHT,
    "width": LTX_WIDTH,
    "num_frames": LTX_NUM_FRAMES,
    "num_inference_steps": 2,
    "max_sequence_length": LTX_TEXT_LEN,
    "guidance_scale": 3.0,
    "output_type": "pt",
}


def tiny_ltx_transformer(
    seed: int = 0, num_layers: int = 2, num_attention_heads: int = 2, attention_head_dim: int = 12
) -> LTXVideoTransformer3DModel:
    """A random ``LTXVideoTransformer3DModel`` (patch 1; the same model serves text- and image-to-video)."""
    torch.manual_seed(seed)
    inner_dim = num_attention_heads * attention_head_dim
    return LTXVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        cross_attention_dim=inner_dim,
        num_layers=num_layers,
        caption_channels=TEXT_EMBED_DIM,
    ).eval()


def tiny_ltx_vae(seed: int = 0) -> AutoencoderKLLTXVideo:
    """A random LTX-Video VAE: 4 blocks of 8 channels, two of them scaling (space / 4, time / 4), 8 latent channels."""
    torch.manual_seed(seed)
    return AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()


def tiny_ltx_pipeline(variant: Variant = "t2v", seed: int = 0, words: list[str] | None = None, **transformer_kwargs):
    """A complete random LTX-Video pipeline (fp32, CPU): ``LTXPipeline`` or ``LTXImageToVideoPipeline``.

    Extra keyword arguments go to :func:`tiny_ltx_transformer` (e.g. ``num_layers``).
    """
    if variant not in ("t2v", "i2v"):
        raise ValueError(f"variant={variant!r} is not supported; use 't2v' or 'i2v'")
    tokenizer = build_word_tokenizer(DEFAULT_WORDS if words is None else words, model_max_length=LTX_TEXT_LEN)
    pipeline_class = LTXPipeline if variant == "t2v" else LTXImageToVideoPipeline
    pipe = pipeline_class(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_ltx_vae(seed=seed),
        text_encoder=tiny_t5_encoder(len(tokenizer), d_model=TEXT_EMBED_DIM, seed=seed),
        tokenizer=tokenizer,
        transformer=tiny_ltx_transformer(seed=seed, **transformer_kwargs),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_ltx_image(seed: int = 0, height: int = LTX_HEIGHT, width: int = LTX_WIDTH):
    """A deterministic random conditioning image for image-to-video (a PIL image, as the pipeline expects)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=generator) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)
