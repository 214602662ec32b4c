"""The toy transformer as a clean-clip predictor, per architecture, in the world's ``(B, F, C, H, W)`` layout.

What differs between the toy architectures when training (:mod:`attnkit_lmp.toy.train`) is small and
lives here, so the training loop is one loop: how a clean clip is noised to a timestep (the scheduler's
own noise path), how prompts are encoded (exactly as the stock pipeline encodes them at generation),
and the transformer's call (latent layout, positional inputs).
"""

from __future__ import annotations

import torch


class CogVideoXDenoiser:
    """CogVideoX: latents ``(B, F, C, H, W)``, DDPM noising (eq. 10), 3D RoPE passed to the forward,
    prompts padded to ``max_sequence_length`` and encoded without a mask (as ``CogVideoXPipeline`` does).

    Image-to-video: the clip's first frame (its latent), followed by zero frames, is concatenated to the
    noisy latent on the channels, as ``CogVideoXImageToVideoPipeline`` conditions on the user's image."""

    def __init__(self, pipeline, model_config):
        self.pipeline = pipeline
        self.text_length = model_config.text_length
        self.image_to_video = model_config.image_to_video
        device = pipeline.transformer.device
        self.rotary = pipeline._prepare_rotary_positional_embeddings(
            model_config.height, model_config.width, model_config.num_frames, device
        )
        self.alphas_cumprod = pipeline.scheduler.alphas_cumprod.float().to(device)

    def noised(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha_bar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        return alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise

    def encode(self, prompts: list[str]) -> torch.Tensor:
        ids = _tokens(self.pipeline, prompts, self.text_length).input_ids
        return self.pipeline.text_encoder(ids.to(self.pipeline.text_encoder.device))[0]

    def predict_clean(
        self, noisy: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor, clip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x0 of ``noisy``; ``clip`` is the clean clip whose first frame conditions an image-to-video model."""
        if self.image_to_video:
            if clip is None:
                raise ValueError("an image-to-video toy model needs the clip whose first frame conditions it")
            first_frame = torch.cat([clip[:, :1], torch.zeros_like(clip[:, 1:])], dim=1)
            noisy = torch.cat([noisy, first_frame.repeat(noisy.shape[0] // clip.shape[0], 1, 1, 1, 1)], dim=2)
        return self.pipeline.transformer(
            hidden_states=noisy,
            encoder_hidden_states=text,
            timestep=timesteps,
            image_rotary_emb=self.rotary,
            return_dict=False,
        )[0]


class WanDenoiser:
    """Wan 2.1: latents ``(B, C, F, H, W)``, flow-matching noising ``(1 - sigma) x_0 + sigma eps`` with
    ``sigma = t / 1000`` (the scheduler's timesteps are its sigmas times 1000), RoPE computed inside the
    model, prompts encoded with their mask and the padding zeroed (as ``WanPipeline`` does)."""

    def __init__(self, pipeline, model_config):
        self.pipeline = pipeline
        self.text_length = model_config.text_length
        self.num_train_timesteps = pipeline.scheduler.config.num_train_timesteps

    def noised(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        sigma = (timesteps.float() / self.num_train_timesteps).view(-1, 1, 1, 1, 1)
        return (1 - sigma) * clean + sigma * noise

    def encode(self, prompts: list[str]) -> torch.Tensor:
        tokens = _tokens(self.pipeline, prompts, self.text_length).to(self.pipeline.text_encoder.device)
        states = self.pipeline.text_encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
        return states * tokens.attention_mask.unsqueeze(-1).to(states.dtype)

    def predict_clean(
        self, noisy: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor, clip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x0 of ``noisy`` (``clip`` is not used: the Wan toy is text-to-video only)."""
        prediction = self.pipeline.transformer(
            hidden_states=noisy.transpose(1, 2),
            encoder_hidden_states=text,
            timestep=timesteps,
            return_dict=False,
        )[0]
        return prediction.transpose(1, 2)


def _tokens(pipeline, prompts: list[str], length: int):
    """Token ids and mask of ``prompts`` padded to ``length``, as both pipelines tokenise them."""
    return pipeline.tokenizer(
        prompts,
        padding="max_length",
        max_length=length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )


def toy_denoiser(pipeline, model_config):
    """The denoiser of ``model_config.architecture`` over ``pipeline``'s transformer and text encoder."""
    if model_config.architecture == "wan":
        return WanDenoiser(pipeline, model_config)
    return CogVideoXDenoiser(pipeline, model_config)
