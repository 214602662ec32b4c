"""Tiny random-weight HunyuanVideo text-to-video pipelines built from configs, for tests (no downloads).

The structure is the released one at toy width: dual-stream blocks then single-stream blocks,
a token refiner, a Llama text encoder (its hidden states are the text tokens, with a padding mask)
and a CLIP text encoder (its pooled output conditions the time embedding). Both tokenizers are the
word-level tokenizer of :mod:`attnkit.testing.tokenizer`, so prompts are padded to
``max_sequence_length`` and the transformer masks the padding.

Default geometry (``HUNYUAN_CALL_KWARGS``)::

    pipe = tiny_hunyuan_pipeline()
    out = pipe("a red dog runs", height=64, width=64, num_frames=9, num_inference_steps=2,
               max_sequence_length=16, prompt_template={"template": "{}", "crop_start": 0},
               true_cfg_scale=2.0, negative_prompt="", output_type="pt",
               generator=torch.Generator().manual_seed(0))
    out.frames.shape  # (1, 9, 3, 64, 64)

The VAE compresses space by 8 and time by 4: 64 x 64 px, 9 frames -> 3 latent frames of 8 x 8,
patches of 2 -> a (3, 4, 4) grid of 48 video tokens, followed by 16 text tokens in every attention
([video, text]). ``prompt_template`` without a system prompt keeps the text at exactly
``max_sequence_length`` tokens (the released template crops 95 template tokens). ``true_cfg_scale``
with a negative prompt makes the pipeline run a second, unconditional forward each step.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

from attnkit.testing.tokenizer import DEFAULT_WORDS, build_word_tokenizer

HUNYUAN_HEIGHT = 64
HUNYUAN_WIDTH = 64
HUNYUAN_NUM_FRAMES = 9
HUNYUAN_TEXT_LEN = 16
HUNYUAN_GRID = (3, 4, 4)
LATENT_CHANNELS = 4
TEXT_EMBED_DIM = 16
POOLED_DIM = 8
CLIP_MAX_LENGTH = 77  # the pipeline always tokenizes CLIP prompts to 77 tokens

HUNYUAN_CALL_KWARGS: dict = {
    "height": HUNYUAN_HEIGHT,
    "width": HUNYUAN_WIDTH,
    "num_frames": HUNYUAN_NUM_FRAMES,
    "num_inference_steps": 2,
    "max_sequence_length": HUNYUAN_TEXT_LEN,
    "prompt_template": {"template": "{}", "crop_start": 0},
    "true_cfg_scale": 2.0,
    "negative_prompt": "",
    "output_type": "pt",
}


def tiny_hunyuan_transformer(
    seed: int = 0,
    num_layers: int = 1,
    num_single_layers: int = 1,
    num_attention_heads: int = 2,
    attention_head_dim: int = 16,
    rope_axes_dim: tuple[int, int, int] = (4, 6, 6),
) -> HunyuanVideoTransformer3DModel:
    """A random ``HunyuanVideoTransformer3DModel``: dual- and single-stream blocks, patch 2, RoPE on video.

    ``sum(rope_axes_dim)`` must equal ``attention_head_dim`` (RoPE splits the head over t, h, w).
    """
    if sum(rope_axes_dim) != attention_head_dim:
        raise ValueError(
            f"rope_axes_dim {rope_axes_dim} sums to {sum(rope_axes_dim)} but attention_head_dim is "
            f"{attention_head_dim}; they must be equal"
        )
    torch.manual_seed(seed)
    return HunyuanVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        num_layers=num_layers,
        num_single_layers=num_single_layers,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=TEXT_EMBED_DIM,
        pooled_projection_dim=POOLED_DIM,
        rope_axes_dim=rope_axes_dim,
    ).eval()


def tiny_hunyuan_vae(seed: int = 0) -> AutoencoderKLHunyuanVideo:
    """A random HunyuanVideo VAE: 4 blocks of 8 channels (space / 8, time / 4), 4 latent channels."""
    torch.manual_seed(seed)
    return AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    ).eval()


def tiny_llama_encoder(vocab_size: int, seed: int = 0) -> LlamaModel:
    """A random two-layer Llama; the pipeline reads its third-to-last hidden state as the text tokens."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_EMBED_DIM,
        intermediate_size=32,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=128,
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
    )
    return LlamaModel(config).eval()


def tiny_clip_text_encoder(vocab_size: int, seed: int = 0) -> CLIPTextModel:
    """A random two-layer CLIP text encoder whose pooled output (at ``</s>``) has ``POOLED_DIM`` features."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=POOLED_DIM,
        intermediate_size=16,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=0,
        eos_token_id=1,  # the word tokenizer's </s>: CLIP pools the hidden state there
        pad_token_id=0,
        projection_dim=POOLED_DIM,
    )
    return CLIPTextModel(config).eval()


def tiny_hunyuan_pipeline(seed: int = 0, words: list[str] | None = None, **transformer_kwargs) -> HunyuanVideoPipeline:
    """A complete random HunyuanVideo text-to-video pipeline (fp32, CPU); see the module docstring.

    Extra keyword arguments go to :func:`tiny_hunyuan_transformer` (e.g. ``num_layers``).
    """
    vocabulary = DEFAULT_WORDS if words is None else words
    tokenizer = build_word_tokenizer(vocabulary, model_max_length=HUNYUAN_TEXT_LEN)
    tokenizer_2 = build_word_tokenizer(vocabulary, model_max_length=CLIP_MAX_LENGTH)
    pipe = HunyuanVideoPipeline(
        text_encoder=tiny_llama_encoder(len(tokenizer), seed=seed),
        tokenizer=tokenizer,
        transformer=tiny_hunyuan_transformer(seed=seed, **transformer_kwargs),
        vae=tiny_hunyuan_vae(seed=seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=tiny_clip_text_encoder(len(tokenizer_2), seed=seed),
        tokenizer_2=tokenizer_2,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
