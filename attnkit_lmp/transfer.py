"""``motion_transfer``: LMP zero-shot motion transfer with an unmodified diffusers pipeline.

Driven: every pipeline a model family of :mod:`attnkit_lmp.families` names (CogVideoX, Wan 2.1 / 2.2 with
its two experts, HunyuanVideo text-to-video, LTX-Video; ``driven_pipelines()`` lists them). The stock
pipeline generates the target from the target prompt only (CFG rows ``uncond`` and ``cond``, in one
forward or two). The plugins do the rest inside one ``attnkit.attach`` session: :class:`ReferenceBranch`
adds the reference rows (the real video re-noised per eq. 10 with the target's own initial noise, or a
generated reference denoised in parallel), :class:`FBDM` reads the reference's subject mask, :class:`RMTM`
lets the target's video queries attend to the reference foreground, and :class:`ASM` (only when the
subjects differ) moves the target's video hidden states away from the reference subject.

Where a model has separate self and cross calls (Wan, LTX-Video; see docs/porting.md), RMTM extends the
video self-attention and FBDM and ASM read the cross-attention. Everything that differs between families
(latent layout, VAE, prompt encoding and per-row inputs, image-to-video conditioning, how the scheduler
noises and steps the reference) lives in one family object per family, which the plan carries.

Every bad input is checked in :func:`prepare_transfer` before anything is encoded or denoised.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

import attnkit

from .asm import ASM
from .config import LMPConfig, LMPConfigError
from .fbdm import FBDM, FBDMRecord
from .families import Family, driven_pipelines, family_of, foreign_config_fields, not_driven_reason
from .reference import ReferenceBranch
from .rmtm import RMTM
from .video_io import VideoReadError, cover_image, load_image, read_video


class MotionTransferError(ValueError):
    """An input of ``motion_transfer`` cannot work; the message says which and how to fix it."""


class UnsupportedPipelineError(MotionTransferError, TypeError):
    """The pipeline is not one ``motion_transfer`` drives."""


class NonFiniteOutputError(attnkit.AttnkitError, FloatingPointError):
    """The generated video holds NaN or inf (it would be written as black); the message says from which step."""


@dataclass
class MotionTransferResult:
    """What ``motion_transfer(..., return_details=True)`` returns.

    ``frames`` and ``reference_frames`` are ``(F, 3, H, W)`` in [0, 1]: the result and the reference as the
    model saw it (the resampled real video, or the decoded generated reference). ``frames`` takes the form
    ``output_type`` asks for, with a leading video dimension when ``num_videos_per_prompt`` > 1 (then
    ``record["videos"]`` counts them and the masks, losses and record are the first video's). ``record``
    describes the run: which reference, the token positions, the layers FBDM read. ``masks`` is FBDM's
    history (one record per refresh), ``asm_losses`` ASM's ``(step, layer, loss)`` list and
    ``asm_relative_steps`` its ``(step, layer, |eta * gradient| / |hidden states|)`` list, ``modules`` which
    modules ran, ``config`` the config used (geometry filled in).
    """

    frames: torch.Tensor
    reference_frames: torch.Tensor | None
    masks: list[FBDMRecord]
    asm_losses: list[tuple[int, int, float]]
    modules: dict[str, bool]
    config: LMPConfig
    record: dict[str, Any] = field(default_factory=dict)
    asm_relative_steps: list[tuple[int, int, float]] = field(default_factory=list)


@dataclass
class TransferPlan:
    """Everything checked and resolved before the long work: geometry, token positions, modules."""

    variant: str
    config: LMPConfig
    reference_frames: torch.Tensor | None
    reference_subject_tokens: list[int]
    target_subject_tokens: list[int]
    use_asm: bool
    family: Family  # the pipeline's model family: latents, VAE, prompts, conditioning, scheduler


OUTPUT_TYPES = ("pt", "np", "pil", "latent")
# Pipeline-call arguments that motion_transfer derives itself (from its own arguments or the LMPConfig), so
# passing them as extra keyword arguments would silently disagree with the reference branch.
_DERIVED_CALL_ARGUMENTS = ("return_dict", "prompt_embeds", "negative_prompt_embeds", "num_videos_per_prompt")


def motion_transfer(
    pipe,
    reference=None,
    reference_prompt: str | None = None,
    reference_subject: str | list[str] | None = None,
    prompt: str | None = None,
    subject: str | list[str] | None = None,
    image=None,
    config: LMPConfig | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    return_details: bool = False,
    progress: bool = True,
    num_videos_per_prompt: int = 1,
    output_type: str = "pt",
    check_finite: bool = False,
    plugins=(),
    **pipeline_kwargs,
):
    """Generate ``prompt``'s video with the motion of ``reference``: ``(F, 3, H, W)`` frames in [0, 1].

    ``reference`` is a video path (mp4, gif, folder of frames), frames in memory, or ``None`` for a reference
    generated from ``reference_prompt``. ``reference_subject`` / ``subject`` are the subject word(s) in
    ``reference_prompt`` / ``prompt``. ``image`` conditions the target of an image-to-video pipeline (the
    reference is conditioned on its own first frame). With ``return_details`` a
    :class:`MotionTransferResult` (``.frames``, ``.record``, FBDM's masks, ...) is returned instead.

    As in a diffusers pipeline call: ``num_videos_per_prompt`` videos are made (then ``frames`` gains a
    leading video dimension), each from its own generator when ``generator`` is a list of that length;
    ``output_type`` is ``"pt"`` (``(F, 3, H, W)`` in [0, 1]), ``"np"`` (``(F, H, W, 3)``), ``"pil"`` (a
    list of images) or ``"latent"``; other keyword arguments (``callback_on_step_end``,
    ``attention_kwargs``, ...) go to the pipeline call. ``progress`` decides every progress bar: one bar
    over the denoising steps, or none.

    A result holding NaN or inf is a :class:`NonFiniteOutputError` naming the first step whose transformer
    output went non-finite; ``check_finite`` (slower) checks every plugin call as it runs and raises
    :class:`attnkit.NonFiniteError` naming the first plugin call or layer that produced one.

    ``plugins`` are more attnkit plugins to register in the same session, after LMP's own: a probe that
    records the reference branch's attention (``branch="reference"``), for example. Each video of
    ``num_videos_per_prompt`` is its own session.
    """
    if output_type not in OUTPUT_TYPES:
        raise MotionTransferError(f"output_type={output_type!r} is not one of {list(OUTPUT_TYPES)}")
    if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
        raise MotionTransferError(f"num_videos_per_prompt={num_videos_per_prompt!r} must be a positive integer")
    generators = _generators(generator, num_videos_per_prompt)
    plan = prepare_transfer(
        pipe, reference, reference_prompt, reference_subject, prompt, subject, image, config
    )
    _check_pipeline_kwargs(pipe, plan, prompt, pipeline_kwargs)
    results = []
    with pipeline_bars(pipe, enabled=False), loading_bars(progress):
        for video_generator in generators:
            results.append(
                _transfer_one(
                    pipe,
                    plan,
                    reference_prompt,
                    prompt,
                    image,
                    video_generator,
                    progress,
                    output_type,
                    pipeline_kwargs,
                    check_finite,
                    list(plugins),
                )
            )
    if num_videos_per_prompt == 1:
        result = results[0]
    else:
        result = _stacked(results, output_type)
    return result if return_details else result.frames


def _generators(generator, count: int) -> list:
    """One generator per video: the list given (of ``count``), or the one generator drawn from in turn."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != count:
            raise MotionTransferError(
                f"generator is a list of {len(generator)}, but num_videos_per_prompt={count}; pass one "
                "generator per video, or a single generator"
            )
        return list(generator)
    return [generator] * count


def _check_pipeline_kwargs(pipe, plan: TransferPlan, prompt, pipeline_kwargs: dict) -> None:
    """Extra keyword arguments must be ones the pipeline takes and that motion_transfer does not set itself."""
    import inspect

    derived = set(sampling_kwargs(plan.config, prompt, None, None, plan.family)) | {"image"}
    for name in pipeline_kwargs:
        if name in derived or name in _DERIVED_CALL_ARGUMENTS:
            raise MotionTransferError(
                f"{name}= is set by motion_transfer itself (from its arguments and the LMPConfig, so that the "
                f"reference branch agrees with the target); set it through motion_transfer's own argument or "
                f"LMPConfig instead"
            )
    parameters = inspect.signature(pipe.__call__).parameters
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return
    unknown = sorted(set(pipeline_kwargs) - set(parameters))
    if unknown:
        raise MotionTransferError(
            f"{type(pipe).__name__} takes no argument {', '.join(map(repr, unknown))}; its call takes "
            f"{sorted(set(parameters) - derived - set(_DERIVED_CALL_ARGUMENTS))}"
        )


def _transfer_one(
    pipe,
    plan,
    reference_prompt,
    prompt,
    image,
    generator,
    progress,
    output_type,
    pipeline_kwargs,
    check_finite=False,
    extra_plugins=(),
):
    config = plan.config
    if plan.variant == "i2v":
        # Cropped like the reference frames, so both first frames show the same part of the scene.
        image = cover_image(load_image(image), config.height, config.width)
    # The target's initial noise; passed to the pipeline as latents= so that eq. 10 can reuse it.
    noise = initial_noise(pipe, config, generator, plan.family)
    reference_branch = make_reference_branch(pipe, plan, reference_prompt, image, noise, generator)
    plugins, fbdm, asm = make_plugins(plan, reference_branch, progress)

    call_kwargs = sampling_kwargs(config, prompt, noise, generator, plan.family)
    if plan.variant == "i2v":
        call_kwargs["image"] = image
        call_kwargs["latents"] = plan.family.pipeline_latents(pipe, noise, image, config, generator)
    if output_type == "latent":
        call_kwargs["output_type"] = "latent"
    watch = FiniteWatch()
    with attnkit.attach(pipe, plugins=[*plugins, *extra_plugins, watch], check_finite=check_finite) as session:
        try:
            config.check_layers(session.num_attention_modules)
        except LMPConfigError as error:
            raise MotionTransferError(str(error)) from None
        frames = pipe(**call_kwargs, **pipeline_kwargs).frames[0]
    watch.check(frames)

    reference_frames = plan.reference_frames
    if reference_frames is None:
        reference_frames = plan.family.decode_latents(pipe, reference_branch.final_latents(), config)
    return MotionTransferResult(
        frames=_converted(frames, output_type),
        reference_frames=reference_frames,
        masks=list(fbdm.history) if fbdm is not None else [],
        asm_losses=list(asm.losses) if asm is not None else [],
        asm_relative_steps=list(asm.relative_steps) if asm is not None else [],
        modules={"fbdm": fbdm is not None, "rmtm": config.enable_rmtm, "asm": asm is not None},
        config=config,
        record={
            "variant": plan.variant,
            "reference": "generated" if plan.reference_frames is None else "video",
            "reference_mode": reference_branch.mode,
            "reference_prompt": reference_prompt,
            "reference_subject_tokens": plan.reference_subject_tokens,
            "fbdm_layers": dict(sorted(fbdm.layer_names.items())) if fbdm is not None else {},
            "prompt": prompt,
            "subject_tokens": plan.target_subject_tokens,
            "activity": module_activity(session, plugins, fbdm),
        },
    )


def _converted(frames: torch.Tensor, output_type: str):
    """``(F, 3, H, W)`` frames in [0, 1] as ``output_type`` asks (``"latent"`` passes through)."""
    if output_type in ("pt", "latent"):
        return frames
    if output_type == "np":
        return frames.detach().permute(0, 2, 3, 1).float().cpu().numpy()
    from PIL import Image

    from .video_io import to_uint8

    return [Image.fromarray(frame) for frame in to_uint8(frames)]


def _stacked(results: list[MotionTransferResult], output_type: str) -> MotionTransferResult:
    """One result for several videos: ``frames`` gets a leading video dimension (a list of lists for PIL);
    the masks, losses and record are the first video's, ``record["videos"]`` holds each one's record."""
    import numpy as np

    frames = [result.frames for result in results]
    if output_type in ("pt", "latent"):
        stacked = torch.stack(frames)
    elif output_type == "np":
        stacked = np.stack(frames)
    else:
        stacked = frames
    first = results[0]
    record = dict(first.record, videos=len(results))
    return MotionTransferResult(
        frames=stacked,
        reference_frames=first.reference_frames,
        masks=first.masks,
        asm_losses=first.asm_losses,
        asm_relative_steps=first.asm_relative_steps,
        modules=first.modules,
        config=first.config,
        record=record,
    )


@contextmanager
def pipeline_bars(pipe, enabled: bool):
    """The pipeline's own step bar shown or hidden for the block, its configuration restored after.

    motion_transfer counts the steps with its own bar (a plugin that also sees the reference rows), so
    the pipeline's bar would be a second one.
    """
    # diffusers keeps the configuration only in this attribute; set_progress_bar_config replaces it whole.
    previous = dict(getattr(pipe, "_progress_bar_config", {}) or {})
    pipe.set_progress_bar_config(**{**previous, "disable": not enabled})
    try:
        yield
    finally:
        pipe.set_progress_bar_config(**previous)


@contextmanager
def loading_bars(enabled: bool):
    """diffusers' and transformers' own bars (``from_pretrained``) hidden for the block unless ``enabled``."""
    if enabled:
        yield
        return
    import diffusers.utils.logging as diffusers_logging

    modules = [diffusers_logging]
    try:
        import transformers.utils.logging as transformers_logging
    except ImportError:  # transformers is optional for the core pipelines' users
        pass
    else:
        modules.append(transformers_logging)
    previous = [module.is_progress_bar_enabled() for module in modules]
    for module in modules:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, was_enabled in zip(modules, previous):
            if was_enabled:
                module.enable_progress_bar()


def module_activity(session, plugins, fbdm) -> dict[str, dict]:
    """What each LMP module actually did: attention calls changed (FBDM: mask refreshes), steps, layers."""
    activity = {}
    for plugin in plugins:
        if plugin.name in ("lmp.rmtm", "lmp.asm"):
            done = session.activity.get(session.plugin_manager.get_name(plugin) or plugin.name, {})
            activity[plugin.name.removeprefix("lmp.")] = {
                "calls_changed": done.get("calls", 0),
                "steps": sorted(done.get("steps", ())),
                "layers": sorted(done.get("layers", ())),
            }
    if fbdm is not None:
        activity["fbdm"] = {
            "mask_refreshes": len(fbdm.history),
            "steps": [record.step for record in fbdm.history],
            "layers": sorted(fbdm.layer_names),
        }
    return activity


class FiniteWatch:
    """Plugin: notes the first step whose transformer output held NaN or inf, to name it if the video does."""

    name = "lmp.finite-watch"

    def __init__(self):
        self.first_bad: tuple[int, str] | None = None

    @attnkit.hookimpl
    def attnkit_session_start(self):
        self.first_bad = None

    @attnkit.hookimpl
    def attnkit_model_output(self, session, outputs):
        if self.first_bad is not None:
            return
        for branch, output in outputs.items():
            if not torch.isfinite(output).all():
                self.first_bad = (session.step, branch)
                return

    def check(self, frames: torch.Tensor) -> None:
        if torch.isfinite(frames).all():
            return
        where = (
            f"the transformer's {self.first_bad[1]} output first went non-finite at step {self.first_bad[0]}"
            if self.first_bad is not None
            else "every transformer output was finite, so the pipeline's guidance, scheduler or VAE made it"
        )
        raise NonFiniteOutputError(
            f"the generated video holds NaN or inf values (it would be written black): {where}. Rerun with "
            "check_finite=True (attnkit-lmp transfer always does) to name the plugin call, and check the "
            "config for huge values (rmtm_lambda, asm_eta, guidance_scale)"
        )


def make_reference_branch(pipe, plan: TransferPlan, reference_prompt: str, image, noise, generator):
    """The reference rows: the encoded video re-noised with the target's noise, or a generated reference."""
    config = plan.config
    family = plan.family
    device, dtype = noise.device, noise.dtype
    encoded = family.encode_reference_prompt(pipe, reference_prompt, config, device, dtype)
    if plan.reference_frames is None:
        from diffusers.utils.torch_utils import randn_tensor

        # Drawn after the target's noise from the same generator: its own noise, reproducible.
        reference_noise = randn_tensor(noise.shape, generator=generator, device=device, dtype=dtype)
        clean_latents, mode = None, "generate"
    else:
        reference_noise = noise
        clean_latents = family.encode_video(pipe, plan.reference_frames).to(device=device, dtype=dtype)
        mode = config.reference_noising
    condition, image_row_inputs = None, {}
    if plan.variant == "i2v":
        # The reference is conditioned on its own first frame; a generated one on the target's image.
        first_frame = plan.reference_frames[0] if plan.reference_frames is not None else image
        condition = family.reference_condition(pipe, first_frame, config, noise, generator)
        image_row_inputs = condition.row_inputs
    return ReferenceBranch(
        family=family,
        noise=reference_noise,
        prompt_embeds=encoded.embeds,
        negative_prompt_embeds=encoded.negative_embeds,
        clean_latents=clean_latents,
        condition=condition,
        mode=mode,
        noise_step=config.reference_noise_step,
        generator=generator,
        # Both reference rows (cond, and uncond when denoised with CFG) share the image conditioning.
        row_inputs={**encoded.row_inputs, **image_row_inputs},
        negative_row_inputs={**encoded.negative_row_inputs, **image_row_inputs},
        guidance_scale=family.reference_guidance_scale(config),
    )


def make_plugins(plan: TransferPlan, reference_branch: ReferenceBranch, progress: bool):
    """``(plugins, fbdm or None, asm or None)`` for the modules the config enables."""
    config = plan.config
    plugins: list = [reference_branch]
    fbdm = asm = None
    if config.enable_fbdm:
        fbdm = FBDM(plan.reference_subject_tokens, config.fbdm_steps, config.fg_threshold, config.fbdm_layers)
        plugins.append(fbdm)
    if config.enable_rmtm:
        plugins.append(
            RMTM(
                config.rmtm_lambda,
                config.rmtm_steps,
                fbdm=fbdm,
                layers=config.rmtm_layers,
                cfg_rows=config.rmtm_cfg_rows,
                scale_values=config.rmtm_scale_values,
                keep_prompt_share=config.rmtm_keep_prompt_share,
            )
        )
    if plan.use_asm:
        asm = ASM(
            plan.reference_subject_tokens,
            eta=config.asm_eta,
            asm_steps=config.asm_steps,
            top_fraction=config.asm_top_fraction,
            layers=config.asm_layers,
            cfg_rows=config.asm_cfg_rows,
            chunk_size=config.asm_chunk_size,
        )
        plugins.append(asm)
    if progress:
        plugins.append(StepProgress(config.num_inference_steps))
    return plugins, fbdm, asm


def prepare_transfer(
    pipe, reference, reference_prompt, reference_subject, prompt, subject, image, config: LMPConfig | None
) -> TransferPlan:
    """Check every input and resolve the geometry; raise a clear error before any long work."""
    variant, family = check_pipeline(pipe), pipeline_family(pipe)
    config = _resolved_config(pipe, config if config is not None else LMPConfig(), family)
    if variant == "t2v" and image is not None:
        raise MotionTransferError(
            f"an image was given but {type(pipe).__name__} is text-to-video; drop the image, or load an "
            "image-to-video checkpoint (e.g. CogVideoX-5b-I2V or Wan2.1-I2V)"
        )
    if variant == "i2v" and image is None:
        raise MotionTransferError(
            f"{type(pipe).__name__} is image-to-video and needs image= (the target's first frame: a PIL "
            "image or a (3, H, W) tensor in [0, 1]); or use a text-to-video pipeline"
        )
    if variant == "i2v":
        try:
            load_image(image)
        except VideoReadError as error:
            raise MotionTransferError(str(error)) from None
    for name, value in (("prompt", prompt), ("reference_prompt", reference_prompt)):
        if not isinstance(value, str) or not value.strip():
            raise MotionTransferError(f"{name}={value!r} must be a non-empty text prompt")
    for name, value in (("subject", subject), ("reference_subject", reference_subject)):
        if not _subject_words(value):
            raise MotionTransferError(
                f"{name}={value!r} must name the subject word(s) of its prompt, e.g. 'dog' (the paper "
                "extracts them with an LLM)"
            )
    reference_tokens = subject_token_positions(
        pipe, reference_prompt, reference_subject, config, "reference_subject", family
    )
    target_tokens = subject_token_positions(pipe, prompt, subject, config, "subject", family)
    reference_frames = None
    if reference is not None:
        reference_frames = read_video(
            reference, config.num_frames, config.height, config.width, frame_sampling=config.frame_sampling
        )
    use_asm = config.enable_asm and _normalised(subject) != _normalised(reference_subject)
    return TransferPlan(variant, config, reference_frames, reference_tokens, target_tokens, use_asm, family)


def check_pipeline(pipe) -> str:
    """``"t2v"`` or ``"i2v"`` for a driven pipeline; otherwise an error saying why, or naming those driven."""
    entry = family_of(pipe)
    if entry is None:
        reason = not_driven_reason(pipe)
        prefix = f"{reason}. " if reason else f"motion_transfer does not support {type(pipe).__name__}; "
        raise UnsupportedPipelineError(
            f"{prefix}it drives {driven_pipelines()} (load a checkpoint of one of these)"
        )
    variant, family = entry
    reason = family.unsupported_reason(pipe)
    if reason is not None:
        raise UnsupportedPipelineError(reason)
    return variant


def pipeline_family(pipe) -> Family:
    """The model family of a driven pipeline (:mod:`attnkit_lmp.families`): its latent layout, VAE, prompt
    encoding, image conditioning, scheduler and call arguments."""
    entry = family_of(pipe)
    if entry is None:
        check_pipeline(pipe)  # raises, saying why
    return entry[1]


def initial_noise(pipe, config: LMPConfig, generator, family: Family) -> torch.Tensor:
    """The target's initial latent noise, the first draw from ``generator`` (``config`` resolved)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(
        family.latent_shape(pipe, config),
        generator=generator,
        device=family.execution_device(pipe),
        dtype=pipe.transformer.dtype,
    )


def sampling_kwargs(config: LMPConfig, prompt: str, noise: torch.Tensor, generator, family: Family) -> dict:
    """The pipeline call's arguments for ``prompt`` from ``config`` (resolved) and the initial ``noise``."""
    return dict(
        prompt=prompt,
        negative_prompt=config.negative_prompt,
        height=config.height,
        width=config.width,
        num_frames=config.num_frames,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        generator=generator,
        latents=noise,
        max_sequence_length=config.max_sequence_length,
        output_type="pt",
        **family.call_kwargs(config),
    )


def baseline_generation(pipe, prompt: str, config: LMPConfig, generator, **call_kwargs) -> torch.Tensor:
    """The unmodified pipeline on ``prompt`` from the same first noise draw ``motion_transfer`` makes."""
    family = pipeline_family(pipe)
    config = _resolved_config(pipe, config, family)
    noise = initial_noise(pipe, config, generator, family)
    kwargs = sampling_kwargs(config, prompt, noise, generator, family)
    if "image" in call_kwargs:
        kwargs["latents"] = family.pipeline_latents(pipe, noise, call_kwargs["image"], config, generator)
    return pipe(**kwargs, **call_kwargs).frames[0]


def subject_token_positions(
    pipe, prompt: str, subject, config: LMPConfig, argument: str, family: Family
) -> list[int]:
    """Positions of the subject word(s) in ``prompt``'s text tokens; the error names word and tokens."""
    positions: set[int] = set()
    for word in _subject_words(subject):
        try:
            positions.update(family.subject_token_positions(pipe, prompt, word, config))
        except ValueError as error:
            raise MotionTransferError(f"{argument}: {error}") from None
    return sorted(positions)


def _resolved_config(pipe, config: LMPConfig, family: Family) -> LMPConfig:
    """A validated copy of ``config`` with the model's geometry filled in where it is ``None``."""
    if not isinstance(config, LMPConfig):
        raise MotionTransferError(f"config must be an LMPConfig, got {type(config).__name__}")
    for owner, defaults in foreign_config_fields(family, config).items():
        raise MotionTransferError(
            f"LMPConfig {', '.join(defaults)} only apply to {owner}, but {type(pipe).__name__} is "
            f"{family.name}; leave them at their defaults ({defaults})"
        )
    values = config.to_dict()
    # Geometry left None: the model's own (CogVideoX: its transformer's sample size; Wan and HunyuanVideo:
    # the pipeline call's defaults).
    for name, default in family.geometry_defaults(pipe).items():
        values[name] = getattr(config, name) or default
    resolved = LMPConfig.from_dict(values).validate()
    temporal, pixels = family.geometry_multiples(pipe)
    if (resolved.num_frames - 1) % temporal:
        raise MotionTransferError(
            f"num_frames={resolved.num_frames} does not fit the VAE: it must be {temporal}k + 1 (e.g. "
            f"{(resolved.num_frames - 1) // temporal * temporal + 1})"
        )
    if resolved.height % pixels or resolved.width % pixels:
        raise MotionTransferError(
            f"height x width = {resolved.height} x {resolved.width} must be multiples of {pixels} "
            "(VAE factor times patch size)"
        )
    return resolved


def _subject_words(subject) -> list[str]:
    if isinstance(subject, str):
        return [subject.strip()] if subject.strip() else []
    if isinstance(subject, (list, tuple)):
        return [word.strip() for word in subject if isinstance(word, str) and word.strip()]
    return []


def _normalised(subject) -> tuple[str, ...]:
    return tuple(sorted(word.lower() for word in _subject_words(subject)))


class StepProgress:
    """Plugin: a tqdm progress bar over denoising steps."""

    name = "lmp.progress"

    def __init__(self, total: int):
        self.total = total
        self.bar = None

    @attnkit.hookimpl
    def attnkit_session_start(self):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc="LMP motion transfer", unit="step")

    @attnkit.hookimpl
    def attnkit_step_end(self):
        if self.bar is not None:
            self.bar.update(1)

    @attnkit.hookimpl
    def attnkit_session_end(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
