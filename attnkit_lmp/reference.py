"""The reference branch: batch rows of the reference video, added beside the target at every forward.

METHOD.md, "Real reference videos — eq. 10". The pipeline only generates the target (rows ``uncond`` and
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
scale out of the pipeline's attributes).

For image-to-video, ``image_latents`` (the reference's own first frame, encoded as the pipeline encodes
the user's image) are concatenated on the channel axis, as the pipeline does for the target. Models
whose forward takes other per-row inputs (a pooled text embedding and text mask in HunyuanVideo, CLIP
image tokens in Wan image-to-video) get the reference's own through ``row_inputs``.
This module also holds the CogVideoX convenience code that encodes a reference video and its first frame.
"""

from __future__ import annotations

import copy
import inspect

import torch

import attnkit

MODES = ("renoise", "noise_once", "generate")


class ReferenceBranch:
    """Plugin: append the reference rows to each transformer forward and, if denoised, step them.

    ``noise`` is ``eps`` (the target's initial noise for a real video, its own for a generated one) and
    ``clean_latents`` the encoded video ``z'_0``, both in the pipeline's latent layout (CogVideoX
    ``(1, frames, channels, h, w)``, Wan and HunyuanVideo ``(1, channels, frames, h, w)``: ``channel_dim``
    says which, for ``image_latents``); ``prompt_embeds`` / ``negative_prompt_embeds`` encode the reference
    prompt (the negative only for parallel denoising with CFG), and ``row_inputs`` /
    ``negative_row_inputs`` the rows' other per-row forward inputs by argument name (see
    ``ModelInputs.add_rows``). ``guidance_scale`` is the scale of the reference's own CFG (default: the
    pipeline's ``guidance_scale`` at each step). ``scheduler`` defaults to a copy of the pipeline's;
    ``generator`` feeds schedulers that draw noise. See the module docstring for ``mode``.
    """

    name = "lmp.reference"

    def __init__(
        self,
        noise: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        clean_latents: torch.Tensor | None = None,
        image_latents: torch.Tensor | None = None,
        mode: str = "renoise",
        noise_step: int = 0,
        scheduler=None,
        generator: torch.Generator | None = None,
        row_inputs: dict[str, torch.Tensor] | None = None,
        negative_row_inputs: dict[str, torch.Tensor] | None = None,
        guidance_scale: float | None = None,
        channel_dim: int = 2,
    ):
        if mode not in MODES:
            raise ValueError(f"reference mode {mode!r} is not one of {list(MODES)}")
        if mode != "generate" and clean_latents is None:
            raise ValueError(f"reference mode {mode!r} needs clean_latents (the encoded reference video)")
        if clean_latents is not None and clean_latents.shape != noise.shape:
            raise ValueError(
                f"reference latents {tuple(clean_latents.shape)} and noise {tuple(noise.shape)} "
                "must have one shape"
            )
        self.noise = noise
        self.prompt_embeds = prompt_embeds
        self.negative_prompt_embeds = negative_prompt_embeds
        self.clean_latents = clean_latents
        self.image_latents = image_latents
        self.mode = mode
        self.noise_step = noise_step if mode == "noise_once" else 0
        self.base_scheduler = scheduler
        self.generator = generator
        self.row_inputs = dict(row_inputs or {})
        self.negative_row_inputs = dict(negative_row_inputs or {})
        self.guidance_scale = guidance_scale
        self.channel_dim = channel_dim
        self._reset()

    def _reset(self) -> None:
        self.scheduler = None
        self.latents: torch.Tensor | None = None  # the parallel-denoised reference latent
        self._old_pred_original_sample = None
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
            self.scheduler = copy.deepcopy(source)
            if hasattr(self.scheduler, "set_begin_index"):
                # Flow-matching schedulers count their own steps from begin_index (the pipeline sets 0);
                # the copy's first step is the first denoised one (noise_step when noised once).
                self.scheduler.set_begin_index(self.noise_step)
        return self.scheduler

    def _timestep_tensor(self, session) -> torch.Tensor:
        return torch.tensor([int(round(session.timestep))], device=self.noise.device, dtype=torch.long)

    def current_latents(self, session) -> torch.Tensor:
        """``z'_t`` for the session's current step."""
        step = session.step
        scheduler = self._scheduler(session)
        if self.mode == "generate":
            if self.latents is None:
                # Flow-matching schedulers start from the noise itself (and have no init_noise_sigma).
                self.latents = self.noise * getattr(scheduler, "init_noise_sigma", 1.0)
            return self.latents
        if not self.denoised_at(step) or self.latents is None:
            noisy = self._noised(scheduler, session)
            if self.denoised_at(step):
                self.latents = noisy
            return noisy
        return self.latents

    def _noised(self, scheduler, session) -> torch.Tensor:
        """``z'_t`` from ``z'_0``: eq. 10 with a DDPM-style scheduler (CogVideoX), or its flow-matching form
        ``z'_t = sigma_t eps + (1 - sigma_t) z'_0`` (schedulers with ``sigmas`` and no ``add_noise``, Wan's
        and HunyuanVideo's, or with flow sigmas: ``UniPCMultistepScheduler(use_flow_sigmas=True)``)."""
        flow_sigmas = getattr(getattr(scheduler, "config", None), "use_flow_sigmas", False)
        if hasattr(scheduler, "add_noise") and not flow_sigmas:
            return scheduler.add_noise(self.clean_latents, self.noise, self._timestep_tensor(session))
        if not hasattr(scheduler, "sigmas"):
            raise TypeError(
                f"{type(scheduler).__name__} has neither add_noise nor sigmas, so the reference cannot be "
                "noised to the current step; use a DDPM-style or flow-matching scheduler"
            )
        # The formula of FlowMatchEulerDiscreteScheduler.scale_noise, with sigma looked up by the step's own
        # timestep: scale_noise (and UniPC's add_noise) use begin_index when the pipeline set one, i.e.
        # sigma_0 every step.
        index = int(torch.argmin((scheduler.timesteps.float().cpu() - session.timestep).abs()))
        sigma = scheduler.sigmas[index].to(device=self.noise.device, dtype=self.noise.dtype)
        return sigma * self.noise + (1.0 - sigma) * self.clean_latents

    @attnkit.hookimpl
    def attnkit_model_inputs(self, session, inputs):
        latents = self.current_latents(session)
        scheduler = self._scheduler(session)
        # Flow-matching pipelines (Wan, HunyuanVideo) feed the latents unscaled: their schedulers have no
        # scale_model_input.
        scale = getattr(scheduler, "scale_model_input", None)
        model_input = latents if scale is None else scale(latents, session.timestep)
        if self.image_latents is not None:
            model_input = torch.cat([model_input, self.image_latents.to(model_input)], dim=self.channel_dim)
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
        self.latents = self._step(session, prediction).to(self.noise.dtype)
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
        t = timesteps[step]
        parameters = inspect.signature(scheduler.step).parameters
        extra = {"generator": self.generator} if "generator" in parameters else {}
        if "old_pred_original_sample" in parameters:  # CogVideoXDPMScheduler, as the pipeline calls it
            previous = timesteps[step - 1] if step > 0 else None
            latents, self._old_pred_original_sample = scheduler.step(
                prediction,
                self._old_pred_original_sample,
                t,
                previous,
                self.latents,
                return_dict=False,
                **extra,
            )
            return latents
        return scheduler.step(prediction, t, self.latents, return_dict=False, **extra)[0]

    def final_latents(self) -> torch.Tensor:
        """The reference latent at the end: the denoised one, or the clean encoding when re-noised."""
        if self.latents is not None and self.mode != "renoise":
            return self.latents
        return self.clean_latents


# --- CogVideoX convenience: encoding the reference -----------------------------------------------------


def padded_num_frames(pipe, num_frames: int) -> int:
    """The frame count the pipeline really generates: CogVideoX 1.5 pads latent frames to ``patch_size_t``."""
    patch_t = pipe.transformer.config.patch_size_t
    latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    if patch_t is not None and latent_frames % patch_t:
        num_frames += (patch_t - latent_frames % patch_t) * pipe.vae_scale_factor_temporal
    return num_frames


def latent_shape(pipe, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
    """Shape ``(1, latent frames, channels, h, w)`` of the pipeline's initial latent (``latents=``)."""
    frames = (padded_num_frames(pipe, num_frames) - 1) // pipe.vae_scale_factor_temporal + 1
    channels = pipe.transformer.config.out_channels
    spatial = pipe.vae_scale_factor_spatial
    return (1, frames, channels, height // spatial, width // spatial)


@torch.no_grad()
def encode_video(pipe, frames: torch.Tensor) -> torch.Tensor:
    """VAE latent ``z'_0`` of ``frames`` ``(F, 3, H, W)`` in [0, 1], laid out as the pipeline's latents.

    Uses the posterior mean (deterministic). For CogVideoX 1.5 the first latent frame is repeated in
    front, where the pipeline puts (and later drops) its padding frames.
    """
    vae = pipe.vae
    video = (frames * 2 - 1).to(device=vae.device, dtype=vae.dtype).permute(1, 0, 2, 3).unsqueeze(0)
    latents = vae.encode(video).latent_dist.mode().permute(0, 2, 1, 3, 4) * pipe.vae_scaling_factor_image
    patch_t = pipe.transformer.config.patch_size_t
    if patch_t is not None and latents.shape[1] % patch_t:
        padding = patch_t - latents.shape[1] % patch_t
        latents = torch.cat([latents[:, :1].expand(-1, padding, -1, -1, -1), latents], dim=1)
    return latents


@torch.no_grad()
def encode_first_frame(pipe, image, num_frames: int, height: int, width: int, noise: torch.Tensor, generator):
    """The channel-concatenated image latents of ``image``, made by the I2V pipeline's ``prepare_latents``."""
    processed = pipe.video_processor.preprocess(image, height=height, width=width).to(
        noise.device, dtype=noise.dtype
    )
    _, image_latents = pipe.prepare_latents(
        processed,
        1,
        noise.shape[2],
        padded_num_frames(pipe, num_frames),
        height,
        width,
        noise.dtype,
        noise.device,
        generator,
        noise,
    )
    return image_latents
