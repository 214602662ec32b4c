"""From which noise level does a toy model keep a clip's motion? Noise rendered clips, denoise, read the path.

The quality bar (:mod:`attnkit_lmp.toy.quality`) says *whether* generated paths are coherent; this says
*where* in the denoising coherence is lost. Rendered training-split clips are noised to the scheduler's
timestep nearest below ``level`` (the model's own noise path, as for a real reference) and denoised from
there with the model and the prompt (classifier-free guidance as in generation). A model that has learnt
motion returns the clip's own path from low and middle levels and invents coherent paths from the top;
a model that denoises each frame on its own keeps the path only from low levels, and its objects jump
from frame to frame when started higher.

    python -m attnkit_lmp.toy diagnose --model runs/toy/pipeline --levels 200,400,600,800,999
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from attnkit_lmp.toy.classify import path_report, read_frames
from attnkit_lmp.toy.train import TrainConfig
from attnkit_lmp.toy.world import background_mix, random_clip_spec, render_clip

DEFAULT_LEVELS = (200, 400, 600, 800, 999)


def denoise_from(
    pipeline,
    clean: torch.Tensor,
    prompts: list[str],
    level: int,
    num_inference_steps: int,
    guidance_scale: float,
    generator: torch.Generator,
) -> np.ndarray:
    """Noise ``clean`` latents (B, F, C, H, W) to ``level`` and denoise them; returns frames (B, F, H, W, 3) in [0, 1].

    ``level`` >= the largest scheduled timestep starts from pure noise, i.e. plain generation.
    """
    from attnkit_lmp.toy.denoiser import toy_denoiser
    from attnkit_lmp.toy.model import toy_config_of

    model_config = toy_config_of(pipeline)
    denoiser = toy_denoiser(pipeline, model_config)
    scheduler = copy.deepcopy(pipeline.scheduler)  # the pipeline's own scheduler keeps its state
    scheduler.set_timesteps(num_inference_steps)
    timesteps = [timestep for timestep in scheduler.timesteps if timestep <= level]
    if not timesteps:
        raise ValueError(
            f"level={level} is below every scheduled timestep {scheduler.timesteps.tolist()}; pick a higher level."
        )
    noise = torch.randn(clean.shape, generator=generator)
    batch = clean.shape[0]
    latents = denoiser.noised(clean, noise, timesteps[0].long().expand(batch))
    text, negative = pipeline.encode_prompt(
        prompt=prompts,
        negative_prompt=[""] * batch,
        do_classifier_free_guidance=True,
        max_sequence_length=model_config.text_length,
    )
    text = torch.cat([negative, text])
    for timestep in timesteps:
        with torch.no_grad():
            prediction = denoiser.predict_clean(
                torch.cat([latents, latents]), text, timestep.expand(2 * batch), clip=clean
            )
        unconditional, conditional = prediction.chunk(2)
        guided = unconditional + guidance_scale * (conditional - unconditional)
        # Scheduler steps are element-wise, so the world's (B, F, C, H, W) layout serves either architecture.
        latents = scheduler.step(guided, timestep, latents, return_dict=False)[0]
    return ((latents.clamp(-1, 1) + 1) / 2).permute(0, 1, 3, 4, 2).numpy()


def motion_kept_by_level(
    pipeline,
    levels=DEFAULT_LEVELS,
    num_clips: int = 6,
    seed: int = 0,
    num_inference_steps: int = 25,
    guidance_scale: float | None = None,
) -> list[dict]:
    """Per noise level: how close the denoised clips stay to their own paths, and how coherent they are.

    Clips are training-split clips of seeds ``seed .. seed + num_clips - 1`` (the distribution the model
    was taught); the noise of each level is drawn from ``seed``.
    """
    from attnkit_lmp.toy.measure import world_of
    from attnkit_lmp.toy.model import generation_kwargs

    if num_clips < 1:
        raise ValueError(f"num_clips={num_clips}: expected at least 1.")
    guidance_scale = generation_kwargs(pipeline)["guidance_scale"] if guidance_scale is None else guidance_scale
    world = world_of(pipeline)
    # The model's own training mix: its backgrounds evenly and, in a world that has them, distractors.
    mix = background_mix(world, 1 / len(world.backgrounds))
    distractors = TrainConfig.distractor_probability if world.distractor_size else 0.0
    specs = [
        random_clip_spec(seed + index, "train", mix, distractor_probability=distractors, world=world)
        for index in range(num_clips)
    ]
    clips = [render_clip(spec, world) for spec in specs]
    clean = torch.from_numpy(np.stack([clip.frames for clip in clips])).float().div(127.5).sub(1.0)
    clean = clean.permute(0, 1, 4, 2, 3).contiguous()
    rows = []
    for level in levels:
        videos = denoise_from(
            pipeline,
            clean,
            [clip.prompt for clip in clips],
            level,
            num_inference_steps,
            guidance_scale,
            torch.Generator().manual_seed(seed),
        )
        readings = [read_frames(video) for video in videos]
        reports = [path_report(reading.centroids) for reading in readings]
        errors = [
            np.nanmean(np.linalg.norm(reading.centroids - clip.centroids, axis=1))
            if np.isfinite(reading.centroids).any()
            else np.nan
            for reading, clip in zip(readings, clips)
        ]
        rows.append(
            {
                "level": int(level),
                "path_error_px": float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan"),
                "coherent_rate": float(np.mean([report.coherent for report in reports])),
                "median_coherence_ratio": float(np.median([report.coherence_ratio for report in reports])),
                "present_rate": float(np.mean([np.isfinite(r.centroids).all() for r in readings])),
                "colour_rate": float(np.mean([r.colour == c.spec.colour for r, c in zip(readings, clips)])),
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'level':>5}  {'path error px':>13}  {'coherent':>8}  {'acc/speed':>9}  {'present':>7}  {'colour':>6}"]
    for row in rows:
        lines.append(
            f"{row['level']:>5}  {row['path_error_px']:>13.2f}  {row['coherent_rate'] * 100:>7.0f}%"
            f"  {row['median_coherence_ratio']:>9.2f}  {row['present_rate'] * 100:>6.0f}%  {row['colour_rate'] * 100:>5.0f}%"
        )
    return "\n".join(lines)


def add_diagnose_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="from which noise level does the model keep a clip's motion (denoise noised clips)"
    )
    parser.add_argument("--model", default=None, help="pipeline folder (default: the bundled model)")
    parser.add_argument(
        "--levels", default=",".join(map(str, DEFAULT_LEVELS)), help="comma-separated timesteps to start from"
    )
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=25, help="denoising steps of a full run")
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.set_defaults(handler=_run_diagnose)


def _run_diagnose(args) -> int:
    from attnkit_lmp.toy.pretrained import load_toy_pipeline

    try:
        levels = [int(level) for level in args.levels.split(",") if level.strip()]
    except ValueError:
        raise SystemExit(f"--levels {args.levels!r}: expected comma-separated integers, e.g. 200,600,999")
    torch.set_num_threads(args.threads)
    pipeline = load_toy_pipeline(args.model)
    rows = motion_kept_by_level(pipeline, levels, args.clips, args.seed, args.steps, args.guidance_scale)
    print(format_rows(rows))
    return 0
