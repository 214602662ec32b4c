"""Wan latents for motion transfer: their shape, and encoding / decoding a reference video.

Wan's latents are ``(B, channels, latent frames, h, w)`` (CogVideoX's are ``(B, frames, channels, h, w)``)
and normalised per channel with the VAE's ``latents_mean`` / ``latents_std``, exactly as ``WanPipeline``
un-normalises them before decoding. The CogVideoX counterparts live in :mod:`attnkit_lmp.reference`.
"""

from __future__ import annotations

import torch


def wan_latent_shape(pipe, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
    """Shape ``(1, channels, latent frames, h, w)`` of a Wan pipeline's initial latent (``latents=``).

    The VAE's latent channels: image-to-video transformers take more (the first frame's condition).
    """
    frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    spatial = pipe.vae_scale_factor_spatial
    return (1, pipe.vae.config.z_dim, frames, height // spatial, width // spatial)


def _normalisation(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(like.device, like.dtype)
    std = torch.tensor(vae.config.latents_std).view(shape).to(like.device, like.dtype)
    return mean, std


@torch.no_grad()
def encode_wan_video(pipe, frames: torch.Tensor) -> torch.Tensor:
    """Normalised VAE latent ``z'_0`` of ``frames`` ``(F, 3, H, W)`` in [0, 1] (posterior mean: deterministic)."""
    vae = pipe.vae
    video = (frames * 2 - 1).to(device=vae.device, dtype=vae.dtype).permute(1, 0, 2, 3).unsqueeze(0)
    latents = vae.encode(video).latent_dist.mode()
    mean, std = _normalisation(vae, latents)
    return (latents - mean) / std


@torch.no_grad()
def decode_wan_latents(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Frames ``(F, 3, H, W)`` in [0, 1] of normalised Wan latents, as ``WanPipeline`` decodes them."""
    latents = latents.to(pipe.vae.dtype)
    mean, std = _normalisation(pipe.vae, latents)
    video = pipe.vae.decode(latents * std + mean, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="pt")[0]
