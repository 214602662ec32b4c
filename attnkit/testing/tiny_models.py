"""Tiny random-weight CogVideoX pipelines built from configs, for tests and CPU demos (no downloads).

Every variant diffusers builds is covered: version ``"1.0"`` (RoPE or sin-cos positions) and
``"1.5"`` (``patch_size_t=2``, RoPE; its image-to-video model adds the ``ofs`` embedding),
each as text-to-video (``"t2v"``) or image-to-video (``"i2v"``, input channels doubled, image
latents concatenated on the channel axis, not a separate token span). Weights are fp32 and depend
only on ``seed``.

Default geometry (the call arguments that make a pipeline run valid)::

    pipe = tiny_cogvideox_pipeline("t2v")
    out = pipe("a red dog runs", height=32, width=32, num_frames=9, num_inference_steps=2,
               max_sequence_length=16, output_type="pt",
               generator=torch.Generator().manual_seed(0))
    out.frames.shape  # (1, 9, 3, 32, 32): batch, frames, channels, height, width

``TINY_CALL_KWARGS`` holds exactly these keyword arguments. The VAE compresses space by 4 and
time by 4, so ``num_frames`` must be ``4k + 1``; 32 x 32 pixels are 8 x 8 latents and, with
patch size 2, a 4 x 4 token grid per latent frame. 9 frames are 3 latent frames (1.0: 3 x 4 x 4 =
48 video tokens); version 1.5 pads the 3 latent frames to 4 and patches pairs of them (2 x 4 x 4 =
32 video tokens). Text is ``max_sequence_length`` = 16 tokens, which must equal ``text_len``
(the pipeline defaults to 226). Image-to-video also takes ``image=`` (a PIL image or a tensor in
[0, 1] of shape (3, H, W), e.g. ``tiny_image()``); its first positional argument is the image, so
pass ``prompt=`` by keyword. The 1.0 image-to-video model has learned positional embeddings, as the
released checkpoint does, so it only runs at its sample size (32 x 32 by default).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from transformers import T5Config, T5EncoderModel

from attnkit.testing.tokenizer import DEFAULT_WORDS, build_word_tokenizer

Variant = Literal["t2v", "i2v"]
Version = Literal["1.0", "1.5"]

TINY_HEIGHT = 32
TINY_WIDTH = 32
TINY_NUM_FRAMES = 9
TINY_TEXT_LEN = 16
VAE_SPATIAL_SCALE = 4  # 2 ** (len(vae block_out_channels) - 1)
VAE_TEMPORAL_SCALE = 4
LATENT_CHANNELS = 4
TEXT_EMBED_DIM = 32

TINY_CALL_KWARGS: dict = {
    "height": TINY_HEIGHT,
    "width": TINY_WIDTH,
    "num_frames": TINY_NUM_FRAMES,
    "num_inference_steps": 2,
    "max_sequence_length": TINY_TEXT_LEN,
    "output_type": "pt",
}


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; use one of {list(allowed)}")


def tiny_cogvideox_transformer(
    variant: Variant = "t2v",
    version: Version = "1.0",
    rotary: bool = True,
    learned_positional_embeddings: bool | None = None,
    seed: int = 0,
    num_layers: int = 2,
    num_attention_heads: int = 2,
    attention_head_dim: int = 16,
    text_len: int = TINY_TEXT_LEN,
    text_embed_dim: int = TEXT_EMBED_DIM,
    latent_channels: int = LATENT_CHANNELS,
    sample_height: int = TINY_HEIGHT // VAE_SPATIAL_SCALE,
    sample_width: int = TINY_WIDTH // VAE_SPATIAL_SCALE,
    sample_frames: int = TINY_NUM_FRAMES,
) -> CogVideoXTransformer3DModel:
    """A random ``CogVideoXTransformer3DModel`` with the structure of the named released variant.

    ``rotary=False`` gives sin-cos positions (CogVideoX-2b style; version 1.0 only).
    ``learned_positional_embeddings`` defaults to what the released checkpoint uses: true for the
    1.0 image-to-video model with RoPE, false otherwise. ``sample_height``/``sample_width`` are in
    latent pixels (image pixels / 4), ``sample_frames`` in video frames. ``attention_head_dim``
    must be a multiple of 16 when ``rotary`` (3-D RoPE splits it over t, h, w).
    """
    _check_choice("variant", variant, ("t2v", "i2v"))
    _check_choice("version", version, ("1.0", "1.5"))
    if version == "1.5" and not rotary:
        raise ValueError("CogVideoX 1.5 always uses rotary positions; pass rotary=True or version='1.0'")
    if rotary and attention_head_dim % 16:
        raise ValueError(f"attention_head_dim={attention_head_dim} must be a multiple of 16 with rotary=True")
    if learned_positional_embeddings is None:
        learned_positional_embeddings = variant == "i2v" and version == "1.0" and rotary
    if learned_positional_embeddings and not rotary:
        raise ValueError("learned positional embeddings exist only together with rotary=True in CogVideoX")

    is_15 = version == "1.5"
    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        in_channels=latent_channels * (2 if variant == "i2v" else 1),
        out_channels=latent_channels,
        time_embed_dim=8,
        ofs_embed_dim=8 if (is_15 and variant == "i2v") else None,
        text_embed_dim=text_embed_dim,
        num_layers=num_layers,
        sample_width=sample_width,
        sample_height=sample_height,
        sample_frames=sample_frames,
        patch_size=2,
        patch_size_t=2 if is_15 else None,
        patch_bias=not is_15,
        temporal_compression_ratio=VAE_TEMPORAL_SCALE,
        max_text_seq_length=text_len,
        use_rotary_positional_embeddings=rotary,
        use_learned_positional_embeddings=learned_positional_embeddings,
    ).eval()


def tiny_cogvideox_vae(version: Version = "1.0", seed: int = 0) -> AutoencoderKLCogVideoX:
    """A random CogVideoX VAE: 3 blocks of 8 channels (space / 4, time / 4), 4 latent channels."""
    torch.manual_seed(seed)
    blocks = 3
    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * blocks,
        up_block_types=("CogVideoXUpBlock3D",) * blocks,
        block_out_channels=(8,) * blocks,
        latent_channels=LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=VAE_TEMPORAL_SCALE,
        sample_height=TINY_HEIGHT,
        sample_width=TINY_WIDTH,
        # The released 1.5 VAE config sets this; image latents are then divided by the factor.
        invert_scale_latents=version == "1.5",
    ).eval()


# One small encoder layer, with the word tokenizer's special ids; shared by the T5-family text encoders.
TINY_T5_SETTINGS: dict = dict(
    d_kv=8,
    d_ff=64,
    num_layers=1,
    num_heads=4,
    relative_attention_num_buckets=8,
    dropout_rate=0.0,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    is_encoder_decoder=False,
    use_cache=False,
)


def tiny_t5_encoder(vocab_size: int, d_model: int = TEXT_EMBED_DIM, seed: int = 0) -> T5EncoderModel:
    """A random one-layer T5 encoder whose hidden size is the transformer's ``text_embed_dim``."""
    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, **TINY_T5_SETTINGS)).eval()


def tiny_cogvideox_scheduler(kind: Literal["ddim", "dpm"] = "ddim"):
    """The CogVideoX-5b scheduler settings (v-prediction, trailing spacing, zero terminal SNR)."""
    _check_choice("scheduler", kind, ("ddim", "dpm"))
    cls = CogVideoXDDIMScheduler if kind == "ddim" else CogVideoXDPMScheduler
    return cls(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        snr_shift_scale=1.0,
        timestep_spacing="trailing",
    )


def tiny_cogvideox_pipeline(
    variant: Variant = "t2v",
    version: Version = "1.0",
    rotary: bool = True,
    seed: int = 0,
    text_len: int = TINY_TEXT_LEN,
    words: list[str] | None = None,
    scheduler: Literal["ddim", "dpm"] = "ddim",
    **transformer_kwargs,
) -> CogVideoXPipeline | CogVideoXImageToVideoPipeline:
    """A complete random CogVideoX pipeline (fp32, CPU) of the given variant; see the module docstring.

    ``words`` is the tokenizer vocabulary (default: ``DEFAULT_WORDS``). Extra keyword arguments go
    to ``tiny_cogvideox_transformer`` (e.g. ``num_layers``, ``learned_positional_embeddings``).
    """
    transformer = tiny_cogvideox_transformer(
        variant=variant, version=version, rotary=rotary, seed=seed, text_len=text_len, **transformer_kwargs
    )
    tokenizer = build_word_tokenizer(DEFAULT_WORDS if words is None else words, model_max_length=text_len)
    components = {
        "tokenizer": tokenizer,
        "text_encoder": tiny_t5_encoder(len(tokenizer), d_model=transformer.config.text_embed_dim, seed=seed),
        "vae": tiny_cogvideox_vae(version=version, seed=seed),
        "transformer": transformer,
        "scheduler": tiny_cogvideox_scheduler(scheduler),
    }
    cls = CogVideoXImageToVideoPipeline if variant == "i2v" else CogVideoXPipeline
    pipe = cls(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def saved_tiny_cogvideox_pipeline(variant: Variant = "t2v") -> str:
    """A folder holding ``tiny_cogvideox_pipeline(variant)`` as a downloaded checkpoint is laid out, for code
    that loads models by path (``attnkit-lmp transfer --model``, ``attnkit-lmp eval --model``).

    Saved once per process into a temporary folder that is removed at exit; do not write into it.
    """
    root = Path(tempfile.mkdtemp(prefix="attnkit-tiny-cogvideox-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = root / f"tiny-{variant}"
    tiny_cogvideox_pipeline(variant).save_pretrained(folder)
    return str(folder)


def tiny_image(seed: int = 0, height: int = TINY_HEIGHT, width: int = TINY_WIDTH) -> torch.Tensor:
    """A deterministic random conditioning image for image-to-video, (3, H, W) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, height, width, generator=generator)
