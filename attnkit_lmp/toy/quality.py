"""The toy model's quality bar: does it draw the prompted colour, shape and background, in every frame, on a smooth path?

Generates ``num_videos`` clips (prompts cycle over every colour x shape and over the model's
backgrounds; in a world with distractors every third prompt adds one; video ``i`` uses noise seed
``seed + i``) and reads each with the analytic classifier of :mod:`attnkit_lmp.toy.classify`. Goals:
:data:`GOALS` (see :func:`attnkit_lmp.toy.classify.path_report` for what a coherent path is).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from attnkit_lmp.toy.classify import path_report, read_frames
from attnkit_lmp.toy.world import COLOURS, DEFAULT_WORLD, SHAPES, WorldConfig, prompt_for

GOALS = {
    "colour_accuracy": 0.98,
    "shape_accuracy": 0.90,
    "background_accuracy": 0.90,
    "coherent_rate": 0.70,
    "present_rate": 0.98,
}


def quality_prompts(num_videos: int, world: WorldConfig = DEFAULT_WORLD) -> list[tuple]:
    """(colour, shape, background, distractor) of each video: every colour x shape pair in turn, the
    world's backgrounds in turn (first world: every 5th on white), a distractor on every third video
    of a world that has them (colour and shape the next ones in the palette, so they differ)."""
    subjects = [(colour, shape) for shape in SHAPES for colour in COLOURS]
    colours, shapes = list(COLOURS), list(SHAPES)
    prompts = []
    for index in range(num_videos):
        colour, shape = subjects[index % len(subjects)]
        if len(world.backgrounds) == 2:
            background = world.backgrounds[1] if index % 5 == 4 else world.backgrounds[0]
        else:
            background = world.backgrounds[index % len(world.backgrounds)]
        distractor = None
        if world.distractor_size and index % 3 == 2:
            distractor = (
                colours[(colours.index(colour) + 1) % len(colours)],
                shapes[(shapes.index(shape) + 1) % len(shapes)],
            )
        prompts.append((colour, shape, background, distractor))
    return prompts


def generate_videos(
    pipeline, prompts: list[str], seeds: list[int], batch_size: int = 10, **kwargs
) -> np.ndarray:
    """Frames (N, T, H, W, 3) float in [0, 1]; video i depends only on its prompt and seed, not on batching."""
    from attnkit_lmp.toy.model import generation_kwargs

    settings = generation_kwargs(pipeline) | {
        key: value for key, value in kwargs.items() if value is not None
    }
    videos = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        generators = [torch.Generator().manual_seed(seed) for seed in seeds[start : start + batch_size]]
        output = pipeline(prompt=chunk, generator=generators, output_type="np", **settings)
        videos.append(np.asarray(output.frames))
    return np.concatenate(videos)


def measure_quality(
    pipeline,
    num_videos: int = 50,
    seed: int = 0,
    batch_size: int = 10,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
) -> dict:
    """Generate and judge ``num_videos`` clips; returns the summary rates and one record per video."""
    if num_videos < 1:
        raise ValueError(f"num_videos={num_videos}: expected at least 1.")
    from attnkit_lmp.toy.model import toy_config_of

    world = toy_config_of(pipeline).world
    specs = quality_prompts(num_videos, world)
    prompts = [prompt_for(*spec) for spec in specs]
    seeds = [seed + index for index in range(num_videos)]
    started = time.perf_counter()
    videos = generate_videos(
        pipeline,
        prompts,
        seeds,
        batch_size=batch_size,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
    )
    generation_seconds = time.perf_counter() - started
    records = []
    for (colour, shape, background, distractor), prompt, video_seed, frames in zip(specs, prompts, seeds, videos):
        reading = read_frames(frames, object_size=world.object_size)
        path = path_report(reading.centroids)
        records.append(
            {
                "prompt": prompt,
                "seed": video_seed,
                "colour_ok": reading.colour == colour,
                "shape_ok": reading.shape == shape,
                "background_ok": reading.background_name == background,
                "distractor_prompted": distractor is not None,
                "second_object_seen": bool(np.mean(reading.second_object) >= 0.5),
                "present_all_frames": bool(np.isfinite(reading.centroids).all()),
                "coherent": path.coherent,
                "moves": path.moves,
                "reading": reading.summary(),
                "path": path.to_dict(),
            }
        )
    ratios = [record["path"]["coherence_ratio"] for record in records]
    summary = {
        "num_videos": num_videos,
        "colour_accuracy": _rate(records, "colour_ok"),
        "shape_accuracy": _rate(records, "shape_ok"),
        "background_accuracy": _rate(records, "background_ok"),
        "present_rate": _rate(records, "present_all_frames"),
        "moving_rate": _rate(records, "moves"),
        "coherent_rate": _rate(records, "coherent"),
        "median_coherence_ratio": float(np.median(ratios)),
        "median_speed_px_per_frame": float(
            np.nanmedian([record["path"]["median_speed"] for record in records])
        ),
        "generation_seconds": round(generation_seconds, 2),
    }
    for shape in SHAPES:
        chosen = [record for record, spec in zip(records, specs) if spec[1] == shape]
        summary[f"shape_accuracy_{shape}"] = _rate(chosen, "shape_ok")
    with_distractor = [record for record in records if record["distractor_prompted"]]
    if with_distractor:
        summary["distractor_drawn_rate"] = _rate(with_distractor, "second_object_seen")
    return {"summary": summary, "videos": records}


def format_table(summary: dict) -> str:
    """A small text table of the quality bar: measured value and goal per criterion."""
    def goal(key):
        return f">= {GOALS[key]:.0%}"

    rows = [
        ("colour right", summary["colour_accuracy"], goal("colour_accuracy")),
        ("shape right", summary["shape_accuracy"], goal("shape_accuracy")),
        *[(f"  {shape}", summary[f"shape_accuracy_{shape}"], "") for shape in SHAPES],
        ("background right", summary["background_accuracy"], goal("background_accuracy")),
        ("object in every frame", summary["present_rate"], goal("present_rate")),
        ("moves (median speed >= 0.5 px/frame)", summary["moving_rate"], ""),
        ("coherent path (|acc|/speed <= 0.6)", summary["coherent_rate"], goal("coherent_rate")),
    ]
    if "distractor_drawn_rate" in summary:
        rows.append(("distractor drawn (when prompted)", summary["distractor_drawn_rate"], ""))
    lines = [f"{'criterion':<40}{'measured':>10}  goal"]
    lines += [f"{name:<40}{value * 100:>9.1f}%  {goal}" for name, value, goal in rows]
    lines.append(f"{'median |acceleration| / median speed':<40}{summary['median_coherence_ratio']:>10.3f}")
    lines.append(f"{'median speed (px/frame)':<40}{summary['median_speed_px_per_frame']:>10.3f}")
    lines.append(f"videos: {summary['num_videos']}, generation took {summary['generation_seconds']} s")
    return "\n".join(lines)


def run_quality_cli(args) -> int:
    from attnkit_lmp.toy.pretrained import load_toy_pipeline

    torch.set_num_threads(args.threads)
    pipeline = load_toy_pipeline(args.model)
    pipeline.set_progress_bar_config(disable=True)
    report = measure_quality(
        pipeline,
        num_videos=args.num_videos,
        seed=args.seed,
        batch_size=args.batch_size,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
    )
    report["settings"] = {
        "model": str(args.model or "bundled"),
        "seed": args.seed,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "threads": args.threads,
    }
    print(format_table(report["summary"]))
    destination = Path(args.json) if args.json else Path(args.model or ".") / "quality.json"
    destination.write_text(json.dumps(report, indent=1) + "\n")
    print(f"report written to {destination}")
    return 0


def _rate(records: list[dict], key: str) -> float:
    return float(np.mean([bool(record[key]) for record in records])) if records else float("nan")
