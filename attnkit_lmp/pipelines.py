"""What ``motion_transfer`` knows about each diffusers pipeline family it drives.

A :class:`PipelineFamily` says, for the stock pipelines of one model family, how the initial latent is
shaped, how a reference video is encoded into that latent space and decoded back, how a prompt becomes
the transformer's text inputs (and which other per-row inputs go with it), what the pipeline call takes,
and how the reference row of an image-to-video pipeline is conditioned on its first frame. Everything
here goes through the pipeline's own public methods and components (``encode_prompt``,
``prepare_latents``, ``vae``, ``tokenizer``); no model internals.

Families: CogVideoX (``CogVideoXPipeline``, ``CogVideoXImageToVideoPipeline``), Wan (``WanPipeline``,
``WanImageToVideoPipeline``, with one or two experts) and HunyuanVideo (``HunyuanVideoPipeline``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from attnkit.tokens import word_token_indices

from .config import LMPConfig
from .reference import encode_first_frame, encode_video, latent_shape, padded_num_frames
from .wan_latents import decode_wan_latents, encode_wan_video, wan_latent_shape


@dataclass
class ReferencePrompt:
    """The reference prompt (and, for the reference's own CFG, the negative prompt) as transformer inputs.

    ``row_inputs`` / ``negative_row_inputs`` are the other per-row forward inputs that go with the text,
    by forward argument name (HunyuanVideo: ``pooled_projections`` and ``encoder_attention_mask``).
    """

    embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    row_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    negative_row_inputs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ReferenceCondition:
    """An image-to-video reference row's conditioning: latents concatenated on ``channel_dim`` to its
    model input, and per-row forward inputs (Wan 2.1's CLIP image tokens)."""

    image_latents: torch.Tensor
    channel_dim: int
    row_inputs: dict[str, torch.Tensor] = field(default_factory=dict)


class PipelineFamily:
    """How ``motion_transfer`` drives the stock pipelines of one model family; subclasses fill it in."""

    name: str
    title: str  # the family's name in messages
    channel_dim: int  # the channel axis of the pipeline's latents
    # LMPConfig fields only this family uses, with their defaults: set on another family's pipeline they are
    # an error (see foreign_config_fields) rather than silently ignored.
    config_fields: dict = {}

    def unsupported_reason(self, pipe) -> str | None:
        """Why ``pipe``, of this family, is not driven (a message naming the variant), or None."""
        return None

    def geometry_defaults(self, pipe) -> dict[str, int]:
        """``height``, ``width``, ``num_frames``, ``max_sequence_length`` the model generates by default."""
        defaults = inspect.signature(pipe.__call__).parameters
        return {name: defaults[name].default for name in ("height", "width", "num_frames", "max_sequence_length")}

    def latent_shape(self, pipe, config: LMPConfig) -> tuple[int, ...]:
        raise NotImplementedError

    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_latents(self, pipe, latents: torch.Tensor, config: LMPConfig) -> torch.Tensor:
        raise NotImplementedError

    def guidance_on(self, config: LMPConfig) -> bool:
        """Whether the pipeline runs classifier-free guidance with ``config``."""
        return config.guidance_scale > 1

    def reference_guidance_scale(self, config: LMPConfig) -> float | None:
        """The scale of a parallel-denoised reference's CFG; None: read the pipeline's at every step."""
        return None

    def encode_reference_prompt(self, pipe, prompt: str, config: LMPConfig, device, dtype) -> ReferencePrompt:
        embeds, negative = pipe.encode_prompt(
            prompt=prompt,
            negative_prompt=config.negative_prompt,
            do_classifier_free_guidance=True,
            num_videos_per_prompt=1,
            max_sequence_length=config.max_sequence_length,
            device=device,
            dtype=dtype,
        )
        return ReferencePrompt(embeds, negative if self.guidance_on(config) else None)

    def subject_token_positions(self, pipe, prompt: str, word: str, config: LMPConfig) -> list[int]:
        """Positions of ``word`` among the text tokens the transformer receives for ``prompt``."""
        return word_token_indices(pipe.tokenizer, prompt, word, max_length=config.max_sequence_length)

    def call_kwargs(self, config: LMPConfig) -> dict:
        """The pipeline call's family-specific arguments (the common ones are in ``sampling_kwargs``)."""
        return {}

    def reference_condition(self, pipe, first_frame, config: LMPConfig, noise, generator) -> ReferenceCondition:
        """Image-to-video: the reference row conditioned on ``first_frame`` (PIL image or (3, H, W) in [0, 1])."""
        raise NotImplementedError


class CogVideoXFamily(PipelineFamily):
    name = "cogvideox"
    title = "CogVideoX"
    channel_dim = 2  # (B, frames, channels, h, w)

    def geometry_defaults(self, pipe) -> dict[str, int]:
        transformer, spatial = pipe.transformer.config, pipe.vae_scale_factor_spatial
        return {
            "height": transformer.sample_height * spatial,
            "width": transformer.sample_width * spatial,
            "num_frames": transformer.sample_frames,
            "max_sequence_length": transformer.max_text_seq_length,
        }

    def latent_shape(self, pipe, config):
        return latent_shape(pipe, config.num_frames, config.height, config.width)

    def encode_video(self, pipe, frames):
        return encode_video(pipe, frames)

    @torch.no_grad()
    def decode_latents(self, pipe, latents, config):
        padding = (padded_num_frames(pipe, config.num_frames) - config.num_frames) // pipe.vae_scale_factor_temporal
        video = pipe.decode_latents(latents[:, padding:].to(pipe.vae.dtype))
        return pipe.video_processor.postprocess_video(video=video, output_type="pt")[0]

    def call_kwargs(self, config):
        return {"use_dynamic_cfg": config.use_dynamic_cfg}

    def reference_condition(self, pipe, first_frame, config, noise, generator):
        image_latents = encode_first_frame(
            pipe, first_frame, config.num_frames, config.height, config.width, noise, generator
        )
        return ReferenceCondition(image_latents, self.channel_dim)


class WanFamily(PipelineFamily):
    """Wan 2.1 / 2.2: one transformer, or two experts (``transformer_2`` below ``boundary_ratio``)."""

    name = "wan"
    title = "Wan"
    channel_dim = 1  # (B, channels, frames, h, w)

    def unsupported_reason(self, pipe):
        if getattr(pipe.config, "expand_timesteps", False):
            return (
                f"{type(pipe).__name__} with expand_timesteps=True (Wan 2.2 TI2V-5B: per-token timesteps and a "
                "first-frame latent written into the video) is not driven by motion_transfer yet; use a Wan 2.1 "
                "or Wan 2.2 A14B checkpoint"
            )
        if pipe.transformer is None:
            return (
                f"{type(pipe).__name__} has no transformer (only transformer_2); motion_transfer needs the "
                "pipeline's first transformer"
            )
        return None

    def latent_shape(self, pipe, config):
        return wan_latent_shape(pipe, config.num_frames, config.height, config.width)

    def encode_video(self, pipe, frames):
        return encode_wan_video(pipe, frames)

    def decode_latents(self, pipe, latents, config):
        return decode_wan_latents(pipe, latents)

    @torch.no_grad()
    def reference_condition(self, pipe, first_frame, config, noise, generator):
        # As WanImageToVideoPipeline conditions the target: the first frame's VAE latent after a frame mask,
        # from the pipeline's own prepare_latents; Wan 2.1 adds the frame's CLIP image tokens.
        device = noise.device
        image = pipe.video_processor.preprocess(first_frame, height=config.height, width=config.width)
        _, condition = pipe.prepare_latents(
            image.to(device, dtype=torch.float32),
            1,
            pipe.vae.config.z_dim,
            config.height,
            config.width,
            config.num_frames,
            torch.float32,
            device,
            generator,
            noise,
        )
        row_inputs = {}
        if pipe.transformer.config.image_dim is not None:
            row_inputs["encoder_hidden_states_image"] = pipe.encode_image(_as_pil(first_frame), device)
        return ReferenceCondition(condition, self.channel_dim, row_inputs)


class HunyuanVideoFamily(PipelineFamily):
    """HunyuanVideo text-to-video: a Llama text stream with its padding mask, a pooled CLIP embedding per
    row, embedded guidance (``guidance_scale``) and optional true CFG (``true_cfg_scale``)."""

    name = "hunyuan_video"
    title = "HunyuanVideo"
    config_fields = {"true_cfg_scale": 1.0, "prompt_template": None}
    channel_dim = 1  # (B, channels, frames, h, w)

    def latent_shape(self, pipe, config):
        frames = (config.num_frames - 1) // pipe.vae_scale_factor_temporal + 1
        spatial = pipe.vae_scale_factor_spatial
        channels = pipe.transformer.config.in_channels
        return (1, channels, frames, config.height // spatial, config.width // spatial)

    @torch.no_grad()
    def encode_video(self, pipe, frames):
        # The posterior mean, scaled as HunyuanVideoPipeline un-scales before decoding.
        vae = pipe.vae
        video = (frames * 2 - 1).to(device=vae.device, dtype=vae.dtype).permute(1, 0, 2, 3).unsqueeze(0)
        return vae.encode(video).latent_dist.mode() * vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, pipe, latents, config):
        video = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="pt")[0]

    def guidance_on(self, config):
        # HunyuanVideoPipeline runs true CFG when true_cfg_scale > 1 and a negative prompt is given (always).
        return config.true_cfg_scale > 1

    def reference_guidance_scale(self, config):
        return config.true_cfg_scale  # the pipeline keeps it in a local variable

    def template(self, pipe, config: LMPConfig) -> dict:
        if config.prompt_template is not None:
            return config.prompt_template
        return inspect.signature(pipe.__call__).parameters["prompt_template"].default

    def encode_reference_prompt(self, pipe, prompt, config, device, dtype):
        def encode(text: str):
            embeds, pooled, mask = pipe.encode_prompt(
                prompt=text,
                prompt_template=self.template(pipe, config),
                num_videos_per_prompt=1,
                device=device,
                dtype=dtype,
                max_sequence_length=config.max_sequence_length,
            )
            return embeds, {"pooled_projections": pooled, "encoder_attention_mask": mask}

        embeds, row_inputs = encode(prompt)
        negative_embeds, negative_row_inputs = None, {}
        if self.guidance_on(config):
            negative_embeds, negative_row_inputs = encode(config.negative_prompt)
        return ReferencePrompt(embeds, negative_embeds, row_inputs, negative_row_inputs)

    def subject_token_positions(self, pipe, prompt, word, config):
        # The pipeline tokenizes the prompt inside its template and keeps the max_sequence_length tokens
        # after crop_start (the template's system part); positions count from there.
        template = self.template(pipe, config)
        crop_start = template.get("crop_start")
        if crop_start is None:  # as HunyuanVideoPipeline derives it
            crop_start = len(pipe.tokenizer(template["template"], padding="max_length")["input_ids"]) - 2
        formatted = template["template"].format(prompt)
        positions = word_token_indices(
            pipe.tokenizer, formatted, word, max_length=crop_start + config.max_sequence_length
        )
        kept = [position - crop_start for position in positions if position >= crop_start]
        if not kept:
            raise ValueError(
                f"word {word!r} is only in the prompt template's system part, not in prompt {prompt!r} "
                f"(the first {crop_start} template tokens are cropped); choose a word of the prompt"
            )
        return kept

    def call_kwargs(self, config):
        kwargs = {"true_cfg_scale": config.true_cfg_scale}
        if config.prompt_template is not None:
            kwargs["prompt_template"] = config.prompt_template
        return kwargs


FAMILIES = {family.name: family for family in (CogVideoXFamily(), WanFamily(), HunyuanVideoFamily())}

# Pipeline class -> (variant, family); subclasses are found through the MRO.
SUPPORTED_PIPELINES = {
    "CogVideoXPipeline": ("t2v", "cogvideox"),
    "CogVideoXImageToVideoPipeline": ("i2v", "cogvideox"),
    "WanPipeline": ("t2v", "wan"),
    "WanImageToVideoPipeline": ("i2v", "wan"),
    "HunyuanVideoPipeline": ("t2v", "hunyuan_video"),
}

# Pipelines of a driven family that motion_transfer refuses, and why.
NOT_DRIVEN = {
    "HunyuanVideoImageToVideoPipeline": (
        "HunyuanVideo image-to-video is not driven by motion_transfer: its text stream comes from a LLaVA "
        "encoder and starts with the image's tokens, so the reference row would need its own first frame "
        "run through that encoder and its subject positions moved past the image tokens (not implemented; "
        "the attnkit adapter itself handles the I2V transformer)"
    ),
}


def foreign_config_fields(family: str, config: LMPConfig) -> dict[str, dict]:
    """Fields of ``config`` set away from their defaults that only *other* families use:
    ``{family title: {field: default}}``."""
    foreign = {}
    for other in FAMILIES.values():
        changed = {name: default for name, default in other.config_fields.items() if getattr(config, name) != default}
        if other.name != family and changed:
            foreign[other.title] = changed
    return foreign


def pipeline_entry(pipe) -> tuple[str, str] | None:
    """``(variant, family name)`` of a driven pipeline, or None."""
    for cls in type(pipe).__mro__:
        if cls.__name__ in SUPPORTED_PIPELINES:
            return SUPPORTED_PIPELINES[cls.__name__]
    return None


def _as_pil(image):
    """A PIL image of ``image`` (PIL, or a (3, H, W) tensor in [0, 1]) for CLIP image processors."""
    if isinstance(image, torch.Tensor):
        from PIL import Image

        pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(pixels)
    return image
