"""LTX-Video (``LTXPipeline``, ``LTXImageToVideoPipeline``) for motion transfer.

The transformer takes its latents packed into one token sequence, ``(B, tokens, features)``, normalised
per channel with the VAE's ``latents_mean`` / ``latents_std`` (the pipeline's own ``_pack_latents`` and
``_normalize_latents`` make them, and the inverse functions undo them before decoding). The text comes
with its padding mask, a per-row forward input. The scheduler is flow-match Euler. Image-to-video does
not concatenate the image: its latent *is* the first latent frame, kept clean by a per-token timestep of
0, so the reference row's first frame is written over its latent before every forward and after every
step (:class:`FirstFrameCondition`).
"""

from __future__ import annotations

import torch

from .base import Family, FirstFrameCondition, ReferencePrompt, vae_posterior_mean


class LTXVideoFamily(Family):
    name = "ltx_video"
    title = "LTX-Video"
    pipelines = {"LTXPipeline": "t2v", "LTXImageToVideoPipeline": "i2v"}
    not_driven = {
        "LTXConditionPipeline": (
            "LTXConditionPipeline is not driven by motion_transfer: its conditioning frames are appended to the "
            "video tokens, so they do not form one latent grid; use LTXPipeline or LTXImageToVideoPipeline"
        ),
    }

    def geometry_multiples(self, pipe):
        spatial = pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size
        return pipe.vae_temporal_compression_ratio, spatial

    def latent_grid(self, pipe, config) -> tuple[int, int, int]:
        """``(frames, h, w)`` of the unpacked latent."""
        frames = (config.num_frames - 1) // pipe.vae_temporal_compression_ratio + 1
        spatial = pipe.vae_spatial_compression_ratio
        return frames, config.height // spatial, config.width // spatial

    def latent_shape(self, pipe, config):
        frames, height, width = self.latent_grid(pipe, config)
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        tokens = (frames // patch_t) * (height // patch) * (width // patch)
        return (1, tokens, pipe.transformer.config.in_channels * patch_t * patch * patch)

    def _pack(self, pipe, latents: torch.Tensor) -> torch.Tensor:
        return pipe._pack_latents(latents, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size)

    @torch.no_grad()
    def encode_video(self, pipe, frames):
        vae = pipe.vae
        latents = pipe._normalize_latents(
            vae_posterior_mean(vae, frames), vae.latents_mean, vae.latents_std, vae.config.scaling_factor
        )
        return self._pack(pipe, latents)

    @torch.no_grad()
    def decode_latents(self, pipe, latents, config):
        # As LTXPipeline decodes with its default decode_timestep=0 (no noise is mixed in at 0).
        vae = pipe.vae
        frames, height, width = self.latent_grid(pipe, config)
        latents = pipe._unpack_latents(
            latents, frames, height, width, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        )
        latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        timestep = None
        if vae.config.timestep_conditioning:
            timestep = torch.zeros(1, device=latents.device, dtype=latents.dtype)
        video = vae.decode(latents.to(vae.dtype), timestep, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="pt")[0]

    def encode_reference_prompt(self, pipe, prompt, config, device, dtype):
        embeds, mask, negative, negative_mask = pipe.encode_prompt(
            prompt=prompt,
            negative_prompt=config.negative_prompt,
            do_classifier_free_guidance=True,
            num_videos_per_prompt=1,
            max_sequence_length=config.max_sequence_length,
            device=device,
            dtype=dtype,
        )
        if not self.guidance_on(config):
            return ReferencePrompt(embeds, None, {"encoder_attention_mask": mask})
        return ReferencePrompt(
            embeds, negative, {"encoder_attention_mask": mask}, {"encoder_attention_mask": negative_mask}
        )

    # --- image-to-video: the first latent frame is the image's -------------------------------------------

    @torch.no_grad()
    def first_frame_condition(self, pipe, image, config, like: torch.Tensor) -> FirstFrameCondition:
        """The packed latent of ``image`` (every frame, as the pipeline repeats it) and the first-frame mask.

        The image is encoded to its posterior mean, so the target's and the reference's first frames are
        encoded alike without a draw from the generator (the pipeline itself samples the posterior).
        """
        vae = pipe.vae
        pixels = pipe.video_processor.preprocess(image, height=config.height, width=config.width)
        latent = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype).unsqueeze(2)).latent_dist.mode()
        latent = pipe._normalize_latents(latent, vae.latents_mean, vae.latents_std)  # as the I2V pipeline does
        frames, _, _ = self.latent_grid(pipe, config)
        latents = latent.repeat(1, 1, frames, 1, 1)
        mask = torch.zeros_like(latents[:, :1])
        mask[:, :, 0] = 1.0
        return FirstFrameCondition(
            latents=self._pack(pipe, latents).to(like), mask=self._pack(pipe, mask)[..., :1].to(like)
        )

    def pipeline_latents(self, pipe, noise, image, config, generator):
        # Given latents=, LTXImageToVideoPipeline uses them as they are: the image must already be in them.
        if image is None:
            return noise
        return self.first_frame_condition(pipe, image, config, noise).model_input(noise)

    def reference_condition(self, pipe, first_frame, config, noise, generator):
        return self.first_frame_condition(pipe, first_frame, config, noise)
