"""The family contract: what ``motion_transfer`` and the reference branch ask of one model family's pipelines.

A :class:`Family` owns everything that differs between model families on the LMP side: how the initial
latent is shaped and handed to the pipeline, how a reference video is encoded into that latent space and
decoded back, how a prompt becomes the transformer's text inputs, how an image-to-video reference row is
conditioned on its first frame, and how a real reference is noised and a parallel reference stepped with
the family's scheduler. Everything goes through the pipeline's own public methods and components
(``encode_prompt``, ``prepare_latents``, ``vae``, ``tokenizer``, ``scheduler``); no model internals.

The defaults are those of flow-matching families (Wan, HunyuanVideo, LTX-Video), whose schedulers move
``z_t = sigma_t eps + (1 - sigma_t) z_0``; CogVideoX overrides the scheduler side with its DDPM-style one.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from attnkit.tokens import word_token_indices

from ..config import LMPConfig


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
    """How an image-to-video reference row is conditioned on its own first frame.

    ``row_inputs`` are per-row forward inputs that carry the condition (Wan 2.1's CLIP image tokens).
    :meth:`model_input` turns the row's latent into its transformer input, :meth:`after_step` puts back
    what the pipeline keeps fixed after a scheduler step; this base conditions through ``row_inputs`` only.
    """

    row_inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def model_input(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def after_step(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


@dataclass
class ChannelConcatCondition(ReferenceCondition):
    """The image latents concatenated to the row's model input on ``channel_dim`` (CogVideoX, Wan)."""

    image_latents: torch.Tensor | None = None
    channel_dim: int = 1

    def model_input(self, latents):
        return torch.cat([latents, self.image_latents.to(latents)], dim=self.channel_dim)


@dataclass
class FirstFrameCondition(ReferenceCondition):
    """The clean first-frame latent written over the row's latent where ``mask`` is 1 (LTX-Video), before
    every forward and after every step, as the image-to-video pipeline keeps its target's first frame."""

    latents: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def model_input(self, latents):
        mask = self.mask.to(latents)
        return self.latents.to(latents) * mask + latents * (1 - mask)

    def after_step(self, latents):
        return self.model_input(latents)


class Family:
    """How ``motion_transfer`` drives the stock pipelines of one model family; one subclass per family."""

    name: ClassVar[str]
    title: ClassVar[str]  # the family's name in messages
    # Pipeline class name -> "t2v" or "i2v"; subclasses of these are driven too (found through the MRO).
    pipelines: ClassVar[dict[str, str]] = {}
    # Pipelines of this family that motion_transfer refuses, with the reason.
    not_driven: ClassVar[dict[str, str]] = {}
    # LMPConfig fields only this family uses, with their defaults: set on another family's pipeline they are
    # an error rather than silently ignored.
    config_fields: ClassVar[dict] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # --- which pipelines, what geometry ------------------------------------------------------------------

    def unsupported_reason(self, pipe) -> str | None:
        """Why ``pipe``, of this family, is not driven (a message naming the variant), or None."""
        return None

    def geometry_defaults(self, pipe) -> dict[str, int]:
        """``height``, ``width``, ``num_frames``, ``max_sequence_length`` the model generates by default."""
        defaults = inspect.signature(pipe.__call__).parameters
        return {name: defaults[name].default for name in ("height", "width", "num_frames", "max_sequence_length")}

    def geometry_multiples(self, pipe) -> tuple[int, int]:
        """``(t, p)``: ``num_frames`` must be ``t k + 1`` and height and width multiples of ``p`` (the VAE's
        temporal factor, and its spatial factor times the transformer's patch size, 2 here)."""
        return pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial * 2

    def execution_device(self, pipe) -> torch.device:
        """Where the pipeline runs its transformer (offloading pipelines report it through diffusers)."""
        return pipe._execution_device

    # --- latents -----------------------------------------------------------------------------------------

    def latent_shape(self, pipe, config: LMPConfig) -> tuple[int, ...]:
        """Shape of one video's initial latent noise, in the layout the pipeline takes as ``latents=``."""
        raise NotImplementedError

    def pipeline_latents(self, pipe, noise: torch.Tensor, image, config: LMPConfig, generator) -> torch.Tensor:
        """What the pipeline call gets as ``latents=`` for the initial ``noise`` (and, I2V, the user's ``image``)."""
        return noise

    def encode_video(self, pipe, frames: torch.Tensor) -> torch.Tensor:
        """VAE latent ``z'_0`` of ``frames`` ``(F, 3, H, W)`` in [0, 1], in the layout of :meth:`latent_shape`."""
        raise NotImplementedError

    def decode_latents(self, pipe, latents: torch.Tensor, config: LMPConfig) -> torch.Tensor:
        """Frames ``(F, 3, H, W)`` in [0, 1] of latents in the layout of :meth:`latent_shape`."""
        raise NotImplementedError

    # --- prompts and guidance ----------------------------------------------------------------------------

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
        raise NotImplementedError(f"motion_transfer does not drive {self.title} image-to-video pipelines")

    # --- the scheduler, for the reference branch ---------------------------------------------------------

    def reference_scheduler(self, scheduler, begin_step: int):
        """A private copy of the pipeline's ``scheduler`` whose first step is ``begin_step``.

        Flow-matching schedulers count their own steps from ``begin_index`` (the pipeline sets 0); the
        copy's first step is the reference's first denoised one.
        """
        scheduler = copy.deepcopy(scheduler)
        scheduler.set_begin_index(begin_step)
        return scheduler

    def initial_reference_latents(self, scheduler, noise: torch.Tensor) -> torch.Tensor:
        """A generated reference's starting latent: flow matching starts from the noise itself."""
        return noise

    def noise_reference(self, scheduler, clean: torch.Tensor, noise: torch.Tensor, timestep: float) -> torch.Tensor:
        """``z'_t = sigma_t eps + (1 - sigma_t) z'_0``, sigma looked up by the step's own timestep.

        The formula of ``FlowMatchEulerDiscreteScheduler.scale_noise``; not that method itself, because it
        (like UniPC's ``add_noise``) uses ``begin_index`` once the pipeline set one, i.e. sigma_0 every step.
        """
        index = int(torch.argmin((scheduler.timesteps.float().cpu() - timestep).abs()))
        sigma = scheduler.sigmas[index].to(device=noise.device, dtype=noise.dtype)
        return sigma * noise + (1.0 - sigma) * clean

    def scale_model_input(self, scheduler, latents: torch.Tensor, timestep: float) -> torch.Tensor:
        """The transformer input of a latent: flow-matching pipelines feed it unscaled."""
        return latents

    def scheduler_step(self, scheduler, prediction, step: int, latents, state, generator):
        """``(latents after step ``step``, state)`` as the pipeline steps its own; ``state`` is carried between
        steps for schedulers that need the previous step's output (None at first)."""
        extra = _generator_argument(scheduler, generator)
        return scheduler.step(prediction, scheduler.timesteps[step], latents, return_dict=False, **extra)[0], state


    # --- the transformer outside the pipeline (the toy world trains its models through these) --------------

    def add_training_noise(self, scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
        """``clean`` latents noised to training ``timesteps`` (integers in ``[0, num_train_timesteps)``, one per
        batch row) by the forward process the family's models learn: flow matching, ``z_t = sigma eps +
        (1 - sigma) z_0`` with ``sigma = t / num_train_timesteps``."""
        shape = (-1,) + (1,) * (clean.ndim - 1)
        sigma = (timesteps.float() / scheduler.config.num_train_timesteps).view(shape)
        return (1 - sigma) * clean + sigma * noise

    def encode_prompts(self, pipe, prompts: list[str], max_sequence_length: int, device) -> torch.Tensor:
        """The transformer's text input for each of ``prompts`` (one row each), encoded as the pipeline encodes
        a prompt, without guidance; gradients reach the text encoder. For the pipelines whose text is one
        tensor (CogVideoX, Wan)."""
        embeds, _ = pipe.encode_prompt(
            prompt=prompts,
            do_classifier_free_guidance=False,
            num_videos_per_prompt=1,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        return embeds

    def transformer_position_inputs(self, pipe, height: int, width: int, num_frames: int, device) -> dict:
        """Forward inputs that carry the positions of a ``num_frames`` x ``height`` x ``width`` video's latent
        grid, when the transformer is called outside the pipeline; none where the model computes them."""
        return {}


def _generator_argument(scheduler, generator) -> dict:
    """``{"generator": generator}`` for schedulers that draw noise in ``step`` (stochastic samplers)."""
    return {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}


@torch.no_grad()
def vae_posterior_mean(vae, frames: torch.Tensor) -> torch.Tensor:
    """The VAE posterior mean of ``frames`` ``(F, 3, H, W)`` in [0, 1]: ``(1, C, f, h, w)``, deterministic."""
    video = (frames * 2 - 1).to(device=vae.device, dtype=vae.dtype).permute(1, 0, 2, 3).unsqueeze(0)
    return vae.encode(video).latent_dist.mode()


def as_pil(image):
    """A PIL image of ``image`` (PIL, or a (3, H, W) tensor in [0, 1]) for image processors."""
    if isinstance(image, torch.Tensor):
        from PIL import Image

        from ..video_io import to_uint8

        return Image.fromarray(to_uint8(image[None])[0])
    return image
