"""Tiny random-weight Wan pipelines (2.1 text-to-video and image-to-video, 2.2 with two experts) built from
configs (no downloads).

Wan has no joint attention: each block runs video self-attention (``attn1``) and cross-attention from
video queries to the text (``attn2``); the image-to-video model also projects CLIP image tokens to
extra keys/values in ``attn2``, with a softmax of their own, ahead of the text. The text encoder is a
random UMT5 and the tokenizer the word-level tokenizer of :mod:`attnkit.testing.tokenizer`.

Default geometry (``WAN_CALL_KWARGS``; image-to-video adds ``WAN_I2V_CALL_KWARGS``)::

    pipe = tiny_wan_pipeline("t2v")
    out = pipe("a red dog runs", height=64, width=64, num_frames=9, num_inference_steps=2,
               max_sequence_length=16, guidance_scale=5.0, output_type="pt",
               generator=torch.Generator().manual_seed(0))
    out.frames.shape  # (1, 9, 3, 64, 64)

The VAE compresses space by 8 and time by 4: 64 x 64 px, 9 frames -> 3 latent frames of 8 x 8,
patches of (1, 2, 2) -> a (3, 4, 4) grid of 48 video tokens. With guidance the pipeline runs two
forwards per step, the prompt's then the negative prompt's. The image-to-video attention hard-codes
512 text tokens (diffusers splits ``encoder_hidden_states`` at ``len - 512``), so its text is always
``max_sequence_length=512``; the CLIP image encoder (32 x 32 px, patches of 8) adds 17 image tokens.

``tiny_wan_pipeline("t2v", boundary_ratio=WAN22_BOUNDARY_RATIO)`` is Wan 2.2's two-expert layout: a second
random transformer (``transformer_2``) denoises the steps whose timestep is below ``boundary_ratio * 1000``.
With 2 steps the timesteps are 1000 and 46.8, so step 0 runs ``transformer`` and step 1 ``transformer_2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

from attnkit.testing.tokenizer import DEFAULT_WORDS, build_word_tokenizer
from attnkit.testing.tiny_models import TINY_T5_SETTINGS

if TYPE_CHECKING:
    from diffusers import WanImageToVideoPipeline

Variant = Literal["t2v", "i2v"]

WAN_HEIGHT = 64
WAN_WIDTH = 64
WAN_NUM_FRAMES = 9
WAN_TEXT_LEN = 16
WAN_I2V_TEXT_LEN = 512  # fixed by diffusers' WanAttnProcessor for image-to-video
WAN_GRID = (3, 4, 4)
WAN_IMAGE_TOKENS = 17  # CLIP: (32 / 8) ** 2 patches + the class token
LATENT_CHANNELS = 16
TEXT_EMBED_DIM = 32
IMAGE_EMBED_DIM = 16
CLIP_IMAGE_SIZE = 32

WAN_CALL_KWARGS: dict = {
    "height": WAN_HEIGHT,
    "width": WAN_WIDTH,
    "num_frames": WAN_NUM_FRAMES,
    "num_inference_steps": 2,
    "max_sequence_length": WAN_TEXT_LEN,
    "guidance_scale": 5.0,
    "output_type": "pt",
}
WAN_I2V_CALL_KWARGS: dict = {"max_sequence_length": WAN_I2V_TEXT_LEN}
WAN22_BOUNDARY_RATIO = 0.875  # the released Wan 2.2 A14B text-to-video value


def _check_variant(variant: str) -> None:
    if variant not in ("t2v", "i2v"):
        raise ValueError(f"variant={variant!r} is not supported; use 't2v' or 'i2v'")


def tiny_wan_transformer(
    variant: Variant = "t2v",
    seed: int = 0,
    num_layers: int = 2,
    num_attention_heads: int = 2,
    attention_head_dim: int = 12,
) -> WanTransformer3DModel:
    """A random ``WanTransformer3DModel``; ``"i2v"`` doubles the input channels (+ 4 mask channels) and adds
    the image projection of ``attn2``."""
    _check_variant(variant)
    image = variant == "i2v"
    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        in_channels=2 * LATENT_CHANNELS + 4 if image else LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        text_dim=TEXT_EMBED_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        image_dim=IMAGE_EMBED_DIM if image else None,
        # The released image-to-video configs project image tokens to the model width for attn2.
        added_kv_proj_dim=num_attention_heads * attention_head_dim if image else None,
        rope_max_seq_len=32,
    ).eval()


def tiny_wan_vae(seed: int = 0) -> AutoencoderKLWan:
    """A random Wan 2.1 VAE (space / 8, time / 4, 16 latent channels) of base width 3."""
    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3, z_dim=LATENT_CHANNELS, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()


def tiny_umt5_encoder(vocab_size: int, seed: int = 0) -> UMT5EncoderModel:
    """A random one-layer UMT5 encoder whose hidden size is the transformer's ``text_dim``."""
    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=vocab_size, d_model=TEXT_EMBED_DIM, **TINY_T5_SETTINGS)
    return UMT5EncoderModel(config).eval()


def tiny_clip_image_encoder(seed: int = 0) -> tuple[CLIPVisionModel, object]:
    """A random two-layer CLIP vision tower (32 x 32 px, patches of 8) and its image processor."""
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=IMAGE_EMBED_DIM,
        projection_dim=IMAGE_EMBED_DIM,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=CLIP_IMAGE_SIZE,
        patch_size=8,
    )
    processor = _clip_image_processor_class()(crop_size=CLIP_IMAGE_SIZE, size=CLIP_IMAGE_SIZE)
    return CLIPVisionModel(config).eval(), processor


def _clip_image_processor_class():
    """The PIL CLIP image processor where transformers has one (the default wants torchvision)."""
    # Touching transformers.CLIPImageProcessor without torchvision logs a warning, so it is only the fallback.
    try:
        from transformers import CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor
    return CLIPImageProcessorPil


def tiny_wan_pipeline(
    variant: Variant = "t2v",
    seed: int = 0,
    words: list[str] | None = None,
    boundary_ratio: float | None = None,
    **transformer_kwargs,
) -> WanPipeline | WanImageToVideoPipeline:
    """A complete random Wan pipeline (fp32, CPU) of the given variant; see the module docstring.

    ``boundary_ratio`` makes it a Wan 2.2 two-expert pipeline (``transformer_2`` with seed + 1 weights).
    Extra keyword arguments go to :func:`tiny_wan_transformer` (e.g. ``num_layers``).
    """
    _check_variant(variant)
    text_length = WAN_I2V_TEXT_LEN if variant == "i2v" else WAN_TEXT_LEN
    tokenizer = build_word_tokenizer(DEFAULT_WORDS if words is None else words, model_max_length=text_length)
    components = {
        "tokenizer": tokenizer,
        "text_encoder": tiny_umt5_encoder(len(tokenizer), seed=seed),
        "vae": tiny_wan_vae(seed=seed),
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
        "transformer": tiny_wan_transformer(variant, seed=seed, **transformer_kwargs),
    }
    if boundary_ratio is not None:
        components["transformer_2"] = tiny_wan_transformer(variant, seed=seed + 1, **transformer_kwargs)
        components["boundary_ratio"] = boundary_ratio
    if variant == "i2v":
        components["image_encoder"], components["image_processor"] = tiny_clip_image_encoder(seed=seed)
        # Imported here: importing the image-to-video pipeline makes transformers warn about torchvision,
        # which every user of attnkit.testing would otherwise see.
        from diffusers import WanImageToVideoPipeline

        pipe = WanImageToVideoPipeline(**components)
    else:
        pipe = WanPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_wan_image(seed: int = 0, height: int = WAN_HEIGHT, width: int = WAN_WIDTH):
    """A deterministic random conditioning image for image-to-video (a PIL image, as the pipeline expects)."""
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(height, width, 3, generator=generator) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)
