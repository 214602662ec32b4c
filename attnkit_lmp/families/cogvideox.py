"""CogVideoX (1.0 and 1.5; ``CogVideoXPipeline``, ``CogVideoXImageToVideoPipeline``) for motion transfer.

Latents are ``(B, frames, channels, h, w)``, scaled by the VAE's ``scaling_factor``; CogVideoX 1.5 pads the
latent frames to a multiple of ``patch_size_t`` in front. The schedulers are DDPM-style (DDIM or the
multistep DPM of CogVideoX), so a real reference is noised by eq. 10 through ``add_noise`` and the model
input is ``scale_model_input``'s. Image-to-video concatenates the first frame's latent on the channels.
"""

from __future__ import annotations

import copy

import torch

from .base import ChannelConcatCondition, Family, _generator_argument, vae_posterior_mean


class CogVideoXFamily(Family):
    name = "cogvideox"
    title = "CogVideoX"
    pipelines = {"CogVideoXPipeline": "t2v", "CogVideoXImageToVideoPipeline": "i2v"}
    channel_dim = 2  # (B, frames, channels, h, w)

    def geometry_defaults(self, pipe):
        transformer, spatial = pipe.transformer.config, pipe.vae_scale_factor_spatial
        return {
            "height": transformer.sample_height * spatial,
            "width": transformer.sample_width * spatial,
            "num_frames": transformer.sample_frames,
            "max_sequence_length": transformer.max_text_seq_length,
        }

    def padded_num_frames(self, pipe, num_frames: int) -> int:
        """The frame count the pipeline really generates: CogVideoX 1.5 pads latent frames to ``patch_size_t``."""
        patch_t = pipe.transformer.config.patch_size_t
        latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
        if patch_t is not None and latent_frames % patch_t:
            num_frames += (patch_t - latent_frames % patch_t) * pipe.vae_scale_factor_temporal
        return num_frames

    def latent_shape(self, pipe, config):
        frames = (self.padded_num_frames(pipe, config.num_frames) - 1) // pipe.vae_scale_factor_temporal + 1
        spatial = pipe.vae_scale_factor_spatial
        return (1, frames, pipe.transformer.config.out_channels, config.height // spatial, config.width // spatial)

    @torch.no_grad()
    def encode_video(self, pipe, frames):
        # For CogVideoX 1.5 the first latent frame is repeated in front, where the pipeline puts (and later
        # drops) its padding frames.
        latents = vae_posterior_mean(pipe.vae, frames).permute(0, 2, 1, 3, 4) * pipe.vae_scaling_factor_image
        patch_t = pipe.transformer.config.patch_size_t
        if patch_t is not None and latents.shape[1] % patch_t:
            padding = patch_t - latents.shape[1] % patch_t
            latents = torch.cat([latents[:, :1].expand(-1, padding, -1, -1, -1), latents], dim=1)
        return latents

    @torch.no_grad()
    def decode_latents(self, pipe, latents, config):
        padded = self.padded_num_frames(pipe, config.num_frames)
        padding = (padded - config.num_frames) // pipe.vae_scale_factor_temporal
        video = pipe.decode_latents(latents[:, padding:].to(pipe.vae.dtype))
        return pipe.video_processor.postprocess_video(video=video, output_type="pt")[0]

    def call_kwargs(self, config):
        return {"use_dynamic_cfg": config.use_dynamic_cfg}

    @torch.no_grad()
    def reference_condition(self, pipe, first_frame, config, noise, generator):
        # The image-to-video pipeline's own prepare_latents makes the channel-concatenated image latents.
        processed = pipe.video_processor.preprocess(first_frame, height=config.height, width=config.width)
        _, image_latents = pipe.prepare_latents(
            processed.to(noise.device, dtype=noise.dtype),
            1,
            noise.shape[2],
            self.padded_num_frames(pipe, config.num_frames),
            config.height,
            config.width,
            noise.dtype,
            noise.device,
            generator,
            noise,
        )
        return ChannelConcatCondition(image_latents=image_latents, channel_dim=self.channel_dim)

    def latent_first_frame_condition(self, latents: torch.Tensor) -> ChannelConcatCondition:
        """The image-to-video condition of a video already in latent space, ``(B, frames, channels, h, w)``: its
        first latent frame followed by zero frames, concatenated on the channels, as ``prepare_latents``
        conditions on an image's latent (CogVideoX 1.0, no ``patch_size_t``)."""
        image_latents = torch.cat([latents[:, :1], torch.zeros_like(latents[:, 1:])], dim=1)
        return ChannelConcatCondition(image_latents=image_latents, channel_dim=self.channel_dim)

    def transformer_position_inputs(self, pipe, height, width, num_frames, device):
        # The 3D RoPE the pipeline computes for its transformer, over the latent frames it generates.
        if not pipe.transformer.config.use_rotary_positional_embeddings:
            return {}
        latent_frames = (self.padded_num_frames(pipe, num_frames) - 1) // pipe.vae_scale_factor_temporal + 1
        return {"image_rotary_emb": pipe._prepare_rotary_positional_embeddings(height, width, latent_frames, device)}

    # --- DDPM-style schedulers ---------------------------------------------------------------------------

    def add_training_noise(self, scheduler, clean, noise, timesteps):
        # DDPM's forward process, eq. 10: sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps.
        return scheduler.add_noise(clean, noise, timesteps)

    def reference_scheduler(self, scheduler, begin_step):
        # DDIM / DPM count steps by the timestep they are given, not from a begin index.
        return copy.deepcopy(scheduler)

    def initial_reference_latents(self, scheduler, noise):
        return noise * scheduler.init_noise_sigma

    def noise_reference(self, scheduler, clean, noise, timestep):
        timesteps = torch.tensor([int(round(timestep))], device=noise.device, dtype=torch.long)
        return scheduler.add_noise(clean, noise, timesteps)

    def scale_model_input(self, scheduler, latents, timestep):
        return scheduler.scale_model_input(latents, timestep)

    def scheduler_step(self, scheduler, prediction, step, latents, state, generator):
        from diffusers import CogVideoXDPMScheduler

        timesteps = scheduler.timesteps
        extra = _generator_argument(scheduler, generator)
        if isinstance(scheduler, CogVideoXDPMScheduler):
            # As CogVideoXPipeline calls it: the previous step's x0 prediction is the carried state.
            previous = timesteps[step - 1] if step > 0 else None
            return scheduler.step(
                prediction, state, timesteps[step], previous, latents, return_dict=False, **extra
            )
        return scheduler.step(prediction, timesteps[step], latents, return_dict=False, **extra)[0], state
