"""The reference branch: batch rows of the reference video, added beside the target at every forward.

docs/method.md, "The reference branch" (eq. 10). The pipeline only generates the target (rows ``uncond`` and
``cond``); this plugin appends the reference's rows in ``attnkit_model_inputs`` and takes their
predictions back in ``attnkit_model_output``, so the stock diffusers loop never sees them.

Three ways to produce the reference latent ``z'_t`` at step t (``mode``):

- ``"renoise"`` (default for a real video): ``z'_t = sqrt(abar_t) z'_0 + sqrt(1 - abar_t) eps`` at every
  step, with ``eps`` the target's own initial noise (the scheduler's ``add_noise``). One row,
  ``"reference"``, conditioned on the reference prompt; its prediction is not used.
- ``"noise_once"``: re-noised as above until step ``noise_step``, then denoised in parallel from that
  noise level with its own classifier-free guidance (rows ``"reference_uncond"`` + ``"reference"``).
- ``"generate"`` (a prompt instead of a video): denoised in parallel from ``noise`` from step 0.

Parallel denoising steps a private copy of the pipeline's scheduler with the pipeline's guidance
scale (with ``use_dynamic_cfg`` the pipeline updates that scale after each forward, so the reference
uses the previous step's value), or with ``guidance_scale`` when given (HunyuanVideo keeps its true-CFG
scale out of the pipeline's attributes). How the reference is noised, scaled and stepped is the
scheduler's business, so the branch asks its model family (:mod:`attnkit_lmp.families`).

For image-to-video, ``condition`` (the reference's own first frame, encoded as the pipeline encodes the
user's image) makes the row's model input, as the pipeline conditions the target. Models whose forward
takes other per-row inputs (a pooled text embedding and text mask in HunyuanVideo, CLIP image tokens in
Wan image-to-video) get the reference's own through ``row_inputs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

import attnkit

if TYPE_CHECKING:
    from .families import Family, ReferenceCondition

MODES = ("renoise", "noise_once", "generate")


class ReferenceBranch:
    """Plugin: append the reference rows to each transformer forward and, if denoised, step them.

    ``family`` is the pipeline's model family (:mod:`attnkit_lmp.families`): it noises, scales and steps
    the reference latent for its scheduler. ``noise`` is ``eps`` (the target's initial noise for a real
    video, its own for a generated one) and ``clean_latents`` the encoded video ``z'_0``, both in the
    family's latent layout; ``prompt_embeds`` / ``negative_prompt_embeds`` encode the reference prompt (the
    negative only for parallel denoising with CFG), and ``row_inputs`` / ``negative_row_inputs`` the rows'
    other per-row forward inputs by argument name (see ``ModelInputs.add_rows``). ``condition`` conditions
    an image-to-video reference on its first frame. ``guidance_scale`` is the scale of the reference's own
    CFG (default: the pipeline's ``guidance_scale`` at each step). ``scheduler`` defaults to a copy of the
    pipeline's; ``generator`` feeds schedulers that draw noise. See the module docstring for ``mode``.
    """

    name = "lmp.reference"

    def __init__(
        self,
        family: Family,
        noise: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        clean_latents: torch.Tensor | None = None,
        condition: ReferenceCondition | None = None,
        mode: str = "renoise",
        noise_step: int = 0,
        scheduler=None,
        generator: torch.Generator | None = None,
        row_inputs: dict[str, torch.Tensor] | None = None,
        negative_row_inputs: dict[str, torch.Tensor] | None = None,
        guidance_scale: float | None = None,
    ):
        if isinstance(family, str) or not hasattr(family, "noise_reference"):
            raise TypeError(
                f"family={family!r} is not a model family object; pass one of attnkit_lmp.families.FAMILIES "
                "(e.g. attnkit_lmp.families.family_of(pipe)[1])"
            )
        if mode not in MODES:
            raise ValueError(f"reference mode {mode!r} is not one of {list(MODES)}")
        if mode != "generate" and clean_latents is None:
            raise ValueError(f"reference mode {mode!r} needs clean_latents (the encoded reference video)")
        if clean_latents is not None and clean_latents.shape != noise.shape:
            raise ValueError(
                f"reference latents {tuple(clean_latents.shape)} and noise {tuple(noise.shape)} "
                "must have one shape"
            )
        self.family = family
        self.noise = noise
        self.prompt_embeds = prompt_embeds
        self.negative_prompt_embeds = negative_prompt_embeds
        self.clean_latents = clean_latents
        self.condition = condition
        self.mode = mode
        self.noise_step = noise_step if mode == "noise_once" else 0
        self.base_scheduler = scheduler
        self.generator = generator
        self.row_inputs = dict(row_inputs or {})
        self.negative_row_inputs = dict(negative_row_inputs or {})
        self.guidance_scale = guidance_scale
        self._reset()

    def _reset(self) -> None:
        self.scheduler = None
        self.latents: torch.Tensor | None = None  # the parallel-denoised reference latent
        self._scheduler_state = None  # what the family's scheduler step carries from one step to the next
        self._step_of_latents = -1

    @attnkit.hookimpl
    def attnkit_session_start(self, session):
        self._reset()

    def denoised_at(self, step: int) -> bool:
        """Whether the reference is denoised in parallel (not re-noised from z'_0) at ``step``."""
        return self.mode == "generate" or (self.mode == "noise_once" and step >= self.noise_step)

    def _scheduler(self, session):
        # Copied at the first forward: only then has the pipeline set this run's timesteps.
        if self.scheduler is None:
            source = self.base_scheduler if self.base_scheduler is not None else session.pipeline.scheduler
            self.scheduler = self.family.reference_scheduler(source, self.noise_step)
        return self.scheduler

    def current_latents(self, session) -> torch.Tensor:
        """``z'_t`` for the session's current step."""
        step = session.step
        scheduler = self._scheduler(session)
        if self.mode == "generate":
            if self.latents is None:
                self.latents = self._conditioned(self.family.initial_reference_latents(scheduler, self.noise))
            return self.latents
        if not self.denoised_at(step) or self.latents is None:
            noisy = self.family.noise_reference(scheduler, self.clean_latents, self.noise, session.timestep)
            noisy = self._conditioned(noisy)
            if self.denoised_at(step):
                self.latents = noisy
            return noisy
        return self.latents

    def _conditioned(self, latents: torch.Tensor) -> torch.Tensor:
        """What the pipeline keeps fixed in its latent (LTX-Video's first frame) put back into ``latents``."""
        return latents if self.condition is None else self.condition.after_step(latents)

    @attnkit.hookimpl
    def attnkit_model_inputs(self, session, inputs):
        latents = self.current_latents(session)
        model_input = self.family.scale_model_input(self._scheduler(session), latents, session.timestep)
        if self.condition is not None:
            model_input = self.condition.model_input(model_input)
        if self.denoised_at(session.step) and self.negative_prompt_embeds is not None:
            inputs.add_rows("reference_uncond", model_input, self.negative_prompt_embeds, **self.negative_row_inputs)
        inputs.add_rows("reference", model_input, self.prompt_embeds, **self.row_inputs)

    @attnkit.hookimpl
    def attnkit_model_output(self, session, outputs):
        step = session.step
        if not self.denoised_at(step) or self._step_of_latents == step:
            return
        prediction = outputs["reference"].float()
        if "reference_uncond" in outputs:
            scale = self.guidance_scale
            if scale is None:
                scale = session.pipeline.guidance_scale if session.pipeline is not None else 1.0
            unconditional = outputs["reference_uncond"].float()
            prediction = unconditional + scale * (prediction - unconditional)
        self.latents = self._conditioned(self._step(session, prediction)).to(self.noise.dtype)
        self._step_of_latents = step

    def _step(self, session, prediction: torch.Tensor) -> torch.Tensor:
        scheduler = self._scheduler(session)
        timesteps = scheduler.timesteps
        step = session.step
        # Compared to within half a unit: flow-matching schedules (Wan) have fractional timesteps.
        if step >= len(timesteps) or abs(float(timesteps[step]) - session.timestep) > 0.5:
            raise RuntimeError(
                f"the reference branch is at step {step} (timestep {session.timestep}) but the scheduler's "
                f"timesteps are {timesteps.tolist()}; attach the session right around one pipeline call"
            )
        latents, self._scheduler_state = self.family.scheduler_step(
            scheduler, prediction, step, self.latents, self._scheduler_state, self.generator
        )
        return latents

    def final_latents(self) -> torch.Tensor:
        """The reference latent at the end: the denoised one, or the clean encoding when re-noised."""
        if self.latents is not None and self.mode != "renoise":
            return self.latents
        return self.clean_latents
