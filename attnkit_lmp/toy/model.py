"""Builds the toy world's tiny pipeline from a config (random weights): CogVideoX, or Wan 2.1 (:mod:`.wan_model`).

Components, all stock diffusers/transformers classes so that an unmodified
``CogVideoXPipeline.from_pretrained(path)`` loads the saved result:

- ``CogVideoXTransformer3DModel``: CogVideoX 1.0 layout (joint [text, video] attention, 3D RoPE,
  no ``patch_size_t``), trained by :mod:`attnkit_lmp.toy.train`.
- ``T5EncoderModel``: a tiny T5 encoder trained jointly with the transformer, so that the colour and
  shape words get embeddings the video tokens learn to attend to (a frozen random encoder would also
  separate the words, but joint training lets the word embeddings specialise, which is what makes
  the text->video attention of a real model informative).
- a word-level tokenizer over the world's vocabulary, built in code.
- ``AutoencoderKLCogVideoX`` with one block, ``temporal_compression_ratio=1`` and hand-set weights
  that make it an exact identity up to ~1e-6: the latent of a clip *is* its pixels in [-1, 1]
  (3 channels, same frames, same size). This keeps the toy honest: the pipeline still goes through
  ``vae.encode``/``vae.decode`` exactly as for a real checkpoint, but motion transfer is measured on
  the diffusion transformer alone, not on a badly trained tiny autoencoder.
- ``CogVideoXDDIMScheduler`` with x0-prediction (``prediction_type="sample"``), which learns far
  faster than v-prediction at this size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
    WanPipeline,
)
from transformers import T5Config, T5EncoderModel

from attnkit.word_tokenizer import word_level_tokenizer
from attnkit_lmp.toy.world import BACKGROUNDS, PROMPT_WORDS, V1_BACKGROUNDS, WorldConfig

# Written beside a saved toy pipeline's weights: the ToyModelConfig it was built with, and training facts.
TOY_CONFIG_FILE = "toy_config.json"
# Large constant used by the identity VAE to pin the encoder's GroupNorm statistics (see below).
_PIN_VALUE = 1000.0
# Shift that moves activations into the range where SiLU(x) == x to float32 precision.
_SILU_SHIFT = 20.0


# Pipeline architectures the toy world trains: a joint-attention MM-DiT (text-to-video, and image-to-video
# conditioned on the first frame as CogVideoXImageToVideoPipeline does) and a self/cross-attention DiT.
ARCHITECTURES: tuple[str, ...] = ("cogvideox", "cogvideox-i2v", "wan")


@dataclass(frozen=True)
class ToyModelConfig:
    """Sizes of the toy pipeline; saved with every checkpoint to refuse resuming a different model."""

    architecture: str = "cogvideox"
    height: int = 32
    width: int = 32
    num_frames: int = 8
    object_size: int = 12
    # Patch 4 makes an 8 x 8 grid of tokens per 32-px frame: a 12-px object covers about 9 tokens, so an
    # attention mask on the token grid can outline it.
    patch_size: int = 4
    num_layers: int = 6
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    time_embed_dim: int = 128
    # The longest prompt ("a blue triangle and a small yellow circle on a checkered background") is 12
    # words plus the end-of-sequence token.
    text_length: int = 14
    text_dim: int = 32
    text_layers: int = 1
    text_heads: int = 2
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
    distractor_size: int = 6

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"ToyModelConfig.architecture={self.architecture!r}: expected one of {list(ARCHITECTURES)}."
            )
        for item in fields(self):
            if item.name in ("architecture", "backgrounds", "distractor_size"):
                continue
            value = getattr(self, item.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ToyModelConfig.{item.name}={value!r}: expected a positive integer.")
        for side in ("height", "width"):
            value = getattr(self, side)
            if value % 8 or value % self.patch_size:
                raise ValueError(
                    f"ToyModelConfig.{side}={value} must be a multiple of 8 (CogVideoXPipeline requires it) and"
                    f" of patch_size={self.patch_size}."
                )
        if self.attention_head_dim % 16:
            raise ValueError(
                f"attention_head_dim={self.attention_head_dim} must be a multiple of 16 so 3D RoPE can split it"
                " into even time (1/4), height (3/8) and width (3/8) parts."
            )
        if self.architecture == "wan" and (self.num_frames - 1) % 4:
            fitting = ((self.num_frames - 1) // 4 + 1) * 4 + 1
            raise ValueError(
                f"ToyModelConfig.num_frames={self.num_frames} with architecture='wan': AutoencoderKLWan encodes"
                f" a first frame and then chunks of 4, so use 4k + 1 frames (e.g. {fitting})."
            )
        if self.text_dim % self.text_heads:
            raise ValueError(f"text_dim={self.text_dim} must be divisible by text_heads={self.text_heads}.")
        self.world.validate()

    @property
    def image_to_video(self) -> bool:
        return self.architecture == "cogvideox-i2v"

    @property
    def world(self) -> WorldConfig:
        return WorldConfig(
            height=self.height,
            width=self.width,
            num_frames=self.num_frames,
            object_size=self.object_size,
            backgrounds=tuple(self.backgrounds),
            distractor_size=self.distractor_size,
        )

    def to_dict(self) -> dict:
        values = asdict(self)
        values["backgrounds"] = list(self.backgrounds)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ToyModelConfig:
        """The config of a saved record. Records written before ``architecture`` existed are CogVideoX;
        records without ``backgrounds`` describe the first world (black and white, no distractors)."""
        known = {item.name for item in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown ToyModelConfig fields {sorted(unknown)}; expected some of {sorted(known)}."
            )
        values = dict(values)
        if "backgrounds" not in values:
            values.setdefault("backgrounds", V1_BACKGROUNDS)
            values.setdefault("distractor_size", 0)
        values["backgrounds"] = tuple(values["backgrounds"])
        return cls(**values)


def generation_kwargs(config_or_pipeline=None) -> dict:
    """Keyword arguments for ``pipeline(prompt, **generation_kwargs(pipeline))`` that match training.

    Accepts a :class:`ToyModelConfig`, a toy pipeline (see :func:`toy_config_of`) or None (the default
    config). ``max_sequence_length`` matters: the CogVideoX pipeline pads prompts to it without an
    attention mask, so another length shows the model pad tokens it never saw. An image-to-video toy also
    needs ``image=`` (the first frame).
    """
    if config_or_pipeline is None:
        config = ToyModelConfig()
    elif isinstance(config_or_pipeline, ToyModelConfig):
        config = config_or_pipeline
    else:
        config = toy_config_of(config_or_pipeline)
    settings = {
        "height": config.height,
        "width": config.width,
        "num_frames": config.num_frames,
        "max_sequence_length": config.text_length,
        "num_inference_steps": 50,
        "guidance_scale": 4.0,
    }
    if config.architecture == "wan":
        # WanPipeline rounds num_frames to 4k + 1 of its 4x temporal VAE; with the toy's factor 1 that
        # always adds one frame, so one fewer is asked for (see attnkit_lmp.toy.wan_model).
        return settings | {"num_frames": config.num_frames - 1}
    return settings | {"use_dynamic_cfg": False}


def toy_config_of(pipeline) -> ToyModelConfig:
    """The :class:`ToyModelConfig` a toy pipeline was built with.

    Read from the ``toy_config.json`` training writes beside the weights; a CogVideoX pipeline without one
    (built in memory) has its sizes read from the transformer config (object size: the default).
    """
    folder = Path(str(getattr(pipeline, "name_or_path", "") or ""))
    record = folder / TOY_CONFIG_FILE
    if str(folder) not in ("", ".") and record.is_file():
        return ToyModelConfig.from_dict(json.loads(record.read_text())["model"])
    transformer = pipeline.transformer.config
    if hasattr(transformer, "sample_height"):
        spatial = pipeline.vae_scale_factor_spatial
        image_input = transformer.in_channels == 2 * transformer.out_channels
        return ToyModelConfig(
            architecture="cogvideox-i2v" if image_input else "cogvideox",
            height=transformer.sample_height * spatial,
            width=transformer.sample_width * spatial,
            num_frames=transformer.sample_frames,
            text_length=transformer.max_text_seq_length,
        )
    raise ValueError(
        f"cannot tell the toy sizes of this {type(pipeline).__name__}: it has no {TOY_CONFIG_FILE} beside its"
        f" weights (name_or_path={folder!s}); load it from its saved folder or pass its ToyModelConfig."
    )


def build_tokenizer(config: ToyModelConfig):
    return word_level_tokenizer(PROMPT_WORDS, model_max_length=config.text_length)


def text_encoder_settings(config: ToyModelConfig, vocab_size: int) -> dict:
    """The tiny text encoder's configuration (T5 for CogVideoX, UMT5 for Wan: the same fields)."""
    return dict(
        vocab_size=vocab_size,
        d_model=config.text_dim,
        d_kv=config.text_dim // config.text_heads,
        d_ff=2 * config.text_dim,
        num_layers=config.text_layers,
        num_heads=config.text_heads,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        dropout_rate=0.0,
        feed_forward_proj="relu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def build_text_encoder(config: ToyModelConfig, vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(**text_encoder_settings(config, vocab_size)))


def build_transformer(config: ToyModelConfig) -> CogVideoXTransformer3DModel:
    return CogVideoXTransformer3DModel(
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        # Image-to-video: the first frame's latent (zeros after it) is concatenated on the channels.
        in_channels=6 if config.image_to_video else 3,
        out_channels=3,
        time_embed_dim=config.time_embed_dim,
        text_embed_dim=config.text_dim,
        num_layers=config.num_layers,
        sample_width=config.width,
        sample_height=config.height,
        sample_frames=config.num_frames,
        patch_size=config.patch_size,
        patch_size_t=None,
        temporal_compression_ratio=1,
        max_text_seq_length=config.text_length,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False,
    )


def build_scheduler() -> CogVideoXDDIMScheduler:
    """CogVideoX's DDIM schedule (zero terminal SNR, trailing spacing), predicting the clean sample."""
    return CogVideoXDDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=True,
        prediction_type="sample",
        rescale_betas_zero_snr=True,
        snr_shift_scale=1.0,
        timestep_spacing="trailing",
    )


def build_identity_vae(config: ToyModelConfig) -> AutoencoderKLCogVideoX:
    """An ``AutoencoderKLCogVideoX`` whose encoder and decoder are the identity on [-1, 1] pixels.

    How the weights realise the identity (every block keeps its stock code path):
    - every ResNet block's last convolution is zero, so the block returns its input;
    - encoder: ``conv_in`` writes channels (r, g, b, -r, -g, -b, P, -P) with P a large constant.
      The output GroupNorm (one group) then sees mean exactly 0 and a variance within 1.5e-6 of
      P^2/4 whatever the clip, so with scale P/2 it passes r, g, b through; a +20 shift puts them
      where SiLU is the identity in float32, and ``conv_out`` removes it. The log-variance channels
      are -30, so sampling the latent distribution adds noise of std ~3e-7;
    - decoder: the spatial norm's ``conv_y`` is zero and ``conv_b`` copies the latent (+20), so the
      output is the latent itself whatever the earlier blocks computed.
    """
    channels = 8
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",),
        up_block_types=("CogVideoXUpBlock3D",),
        block_out_channels=(channels,),
        latent_channels=3,
        layers_per_block=1,
        norm_num_groups=1,
        temporal_compression_ratio=1,
        sample_height=config.height,
        sample_width=config.width,
        scaling_factor=1.0,
        force_upcast=False,
    )
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        for module in vae.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.fill_(1.0)
        encoder, decoder = vae.encoder, vae.decoder
        # Causal 3x3x3 convolutions: the current frame is the last temporal tap, centre pixel.
        current = (slice(None), slice(None), 2, 1, 1)
        conv_in = encoder.conv_in.conv
        for rgb in range(3):
            conv_in.weight[rgb, rgb][current[2:]] = 1.0
            conv_in.weight[rgb + 3, rgb][current[2:]] = -1.0
        conv_in.bias[6] = _PIN_VALUE
        conv_in.bias[7] = -_PIN_VALUE
        encoder.norm_out.weight.fill_(_PIN_VALUE / 2)
        encoder.norm_out.bias.fill_(_SILU_SHIFT)
        conv_out = encoder.conv_out.conv
        for rgb in range(3):
            conv_out.weight[rgb, rgb][current[2:]] = 1.0
            conv_out.bias[rgb] = -_SILU_SHIFT
            conv_out.bias[rgb + 3] = -30.0  # log-variance
        conv_b = decoder.norm_out.conv_b.conv
        for rgb in range(3):
            conv_b.weight[rgb, rgb, 0, 0, 0] = 1.0
            conv_b.bias[rgb] = _SILU_SHIFT
        conv_out = decoder.conv_out.conv
        for rgb in range(3):
            conv_out.weight[rgb, rgb][current[2:]] = 1.0
            conv_out.bias[rgb] = -_SILU_SHIFT
    return vae


def build_toy_pipeline(config: ToyModelConfig | None = None, seed: int = 0):
    """A fresh (untrained) toy pipeline; the same ``config`` and ``seed`` give the same weights.

    A ``CogVideoXPipeline``, a ``CogVideoXImageToVideoPipeline`` for ``architecture="cogvideox-i2v"``, or
    a ``WanPipeline`` for ``architecture="wan"``.
    """
    config = config or ToyModelConfig()
    config.validate()
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(config)
    if config.architecture == "wan":
        from attnkit_lmp.toy import wan_model

        pipeline_class = WanPipeline
        builders = (wan_model.build_wan_text_encoder, wan_model.build_identity_wan_vae)
        builders += (wan_model.build_wan_transformer, wan_model.build_wan_scheduler)
    else:
        pipeline_class = CogVideoXImageToVideoPipeline if config.image_to_video else CogVideoXPipeline
        builders = (build_text_encoder, build_identity_vae, build_transformer, build_scheduler)
    text_encoder, vae, transformer, scheduler = builders
    # Built in this order from the seed, so a config and seed always give the same weights.
    return pipeline_class(
        tokenizer=tokenizer,
        text_encoder=text_encoder(config, vocab_size=len(tokenizer)),
        vae=vae(config),
        transformer=transformer(config),
        scheduler=scheduler(),
    )
