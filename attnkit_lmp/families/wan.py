"""Wan 2.1 / 2.2 (``WanPipeline``, ``WanImageToVideoPipeline``; one transformer, or two experts) for motion transfer.

Latents are ``(B, channels, latent frames, h, w)``, normalised per channel with the VAE's ``latents_mean`` /
``latents_std``, exactly as ``WanPipeline`` un-normalises them before decoding. The schedulers are flow
matching (``UniPCMultistepScheduler(use_flow_sigmas=True)`` as released, or flow-match Euler).
Image-to-video concatenates the first frame's masked latent on the channels; Wan 2.1 adds the frame's
CLIP image tokens as a per-row input.
"""

from __future__ import annotations

import torch

from .base import ChannelConcatCondition, Family, as_pil, vae_posterior_mean


class WanFamily(Family):
    """Wan 2.1 / 2.2: one transformer, or two experts (``transformer_2`` below ``boundary_ratio``)."""

    name = "wan"
    title = "Wan"
    pipelines = {"WanPipeline": "t2v", "WanImageToVideoPipeline": "i2v"}
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
        # The VAE's latent channels: image-to-video transformers take more (the first frame's condition).
        frames = (config.num_frames - 1) // pipe.vae_scale_factor_temporal + 1
        spatial = pipe.vae_scale_factor_spatial
        return (1, pipe.vae.config.z_dim, frames, config.height // spatial, config.width // spatial)

    @torch.no_grad()
    def encode_video(self, pipe, frames):
        latents = vae_posterior_mean(pipe.vae, frames)
        mean, std = _normalisation(pipe.vae, latents)
        return (latents - mean) / std

    @torch.no_grad()
    def decode_latents(self, pipe, latents, config):
        latents = latents.to(pipe.vae.dtype)
        mean, std = _normalisation(pipe.vae, latents)
        video = pipe.vae.decode(latents * std + mean, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="pt")[0]

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
            row_inputs["encoder_hidden_states_image"] = pipe.encode_image(as_pil(first_frame), device)
        return ChannelConcatCondition(row_inputs, image_latents=condition, channel_dim=self.channel_dim)


def _normalisation(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(like.device, like.dtype)
    std = torch.tensor(vae.config.latents_std).view(shape).to(like.device, like.dtype)
    return mean, std
