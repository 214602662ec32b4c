"""The toy transformer as a clean-clip predictor, in the world's ``(B, F, C, H, W)`` layout, for any toy family.

What differs between the toy architectures when training (:mod:`attnkit_lmp.toy.train`) belongs to the
model family, so the denoiser asks the pipeline's :class:`~attnkit_lmp.families.base.Family`: how a clean
clip is noised to a timestep (the family's training noise), how prompts are encoded (as the stock
pipeline encodes them at generation), the family's latent layout and the transformer's positional inputs,
and how an image-to-video model is conditioned on the clip's first frame. The training loop is one loop.
"""

from __future__ import annotations

import torch

from attnkit_lmp.families import family_of

# The world's clips, and so the training batches, are (B, F, C, H, W): channels on axis 2.
WORLD_CHANNEL_DIM = 2


class ToyDenoiser:
    """A toy pipeline's transformer and text encoder as a clean-clip (x0) predictor, driven by its family."""

    def __init__(self, pipeline, model_config):
        found = family_of(pipeline)
        if found is None:
            raise ValueError(
                f"{type(pipeline).__name__} is not a pipeline of a model family attnkit_lmp drives; the toy world "
                "trains CogVideoX and Wan pipelines (build one with attnkit_lmp.toy.model.build_toy_pipeline)"
            )
        self.variant, self.family = found
        self.pipeline = pipeline
        self.text_length = model_config.text_length
        self.position_inputs = self.family.transformer_position_inputs(
            pipeline, model_config.height, model_config.width, model_config.num_frames, pipeline.transformer.device
        )

    def noised(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.family.add_training_noise(self.pipeline.scheduler, clean, noise, timesteps)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return self.family.encode_prompts(
            self.pipeline, prompts, self.text_length, self.pipeline.text_encoder.device
        )

    def predict_clean(
        self, noisy: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor, clip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x0 of ``noisy``; ``clip`` is the clean clip whose first frame conditions an image-to-video model."""
        channel_dim = self.family.channel_dim
        hidden_states = noisy.movedim(WORLD_CHANNEL_DIM, channel_dim)
        if self.variant == "i2v":
            if clip is None:
                raise ValueError("an image-to-video toy model needs the clip whose first frame conditions it")
            clip = clip.repeat(noisy.shape[0] // clip.shape[0], 1, 1, 1, 1).movedim(WORLD_CHANNEL_DIM, channel_dim)
            hidden_states = self.family.latent_first_frame_condition(clip).model_input(hidden_states)
        prediction = self.pipeline.transformer(
            hidden_states=hidden_states,
            encoder_hidden_states=text,
            timestep=timesteps,
            **self.position_inputs,
            return_dict=False,
        )[0]
        return prediction.movedim(channel_dim, WORLD_CHANNEL_DIM)


def toy_denoiser(pipeline, model_config) -> ToyDenoiser:
    """The denoiser over ``pipeline``'s transformer and text encoder (``model_config``: its sizes)."""
    return ToyDenoiser(pipeline, model_config)
