"""HunyuanVideo text-to-video (``HunyuanVideoPipeline``) for motion transfer.

A Llama text stream with its padding mask and a pooled CLIP embedding per row, embedded guidance
(``guidance_scale``) and optional true CFG (``true_cfg_scale``). Latents are ``(B, channels, frames, h, w)``
scaled by the VAE's ``scaling_factor``; the scheduler is flow-match Euler.
"""

from __future__ import annotations

import inspect

import torch

from attnkit.tokens import word_token_indices

from .base import Family, ReferencePrompt, vae_posterior_mean


class HunyuanVideoFamily(Family):
    name = "hunyuan_video"
    title = "HunyuanVideo"
    pipelines = {"HunyuanVideoPipeline": "t2v"}
    not_driven = {
        "HunyuanVideoImageToVideoPipeline": (
            "HunyuanVideo image-to-video is not driven by motion_transfer: its text stream comes from a LLaVA "
            "encoder and starts with the image's tokens, so the reference row would need its own first frame "
            "run through that encoder and its subject positions moved past the image tokens (not implemented; "
            "the attnkit adapter itself handles the I2V transformer)"
        ),
    }
    config_fields = {"true_cfg_scale": 1.0, "prompt_template": None}

    def latent_shape(self, pipe, config):
        frames = (config.num_frames - 1) // pipe.vae_scale_factor_temporal + 1
        spatial = pipe.vae_scale_factor_spatial
        channels = pipe.transformer.config.in_channels
        return (1, channels, frames, config.height // spatial, config.width // spatial)

    @torch.no_grad()
    def encode_video(self, pipe, frames):
        # Scaled as HunyuanVideoPipeline un-scales before decoding.
        return vae_posterior_mean(pipe.vae, frames) * pipe.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, pipe, latents, config):
        video = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="pt")[0]

    def guidance_on(self, config):
        # HunyuanVideoPipeline runs true CFG when true_cfg_scale > 1 and a negative prompt is given (always).
        return config.true_cfg_scale > 1

    def reference_guidance_scale(self, config):
        return config.true_cfg_scale  # the pipeline keeps it in a local variable

    def template(self, pipe, config) -> dict:
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
