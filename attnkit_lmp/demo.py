"""The main-job demo: copy a held-out toy clip's motion onto another subject with LMP, next to the baseline.

With the trained toy model bundled in the package (``attnkit_lmp/toy/pretrained``), on a CPU, it:

1. renders a reference clip the model never saw in training: the first case of the held-out test split
   of :mod:`attnkit_lmp.toy.measure` (in a world with distractors, the first whose reference has one),
   a fixed rule rather than a chosen clip;
2. generates the target prompt (another colour and shape) twice from the same noise: with the stock
   pipeline (baseline) and with LMP (FBDM + RMTM + ASM) in the settings the model folder's
   ``lmp_defaults.json`` gives it;
3. writes to ``--out``: ``reference``/``baseline``/``lmp`` as ``.mp4`` and ``.gif``, ``comparison.mp4``/
   ``.gif`` (reference | baseline | LMP side by side, each labelled with its prompt),
   ``fbdm_explorer.html`` (FBDM's subject attention and
   foreground mask per step over the reference frames, next to the ground truth) and ``metrics.json``
   (scores, the full LMP config, timings);
4. prints motion fidelity, path error and whether the target's look was kept, for baseline vs LMP.

Run ``python -m attnkit_lmp.demo --out demo_out`` (or ``attnkit-lmp demo``). Scores are those of
:mod:`attnkit_lmp.toy.measure`; docs/toy-measurement.md has them over many clips.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnkit_lmp.cli import register_command

# The demo's case is the first of the test split's first DEMO_CASE_SEARCH clips that satisfies the rule
# in demo_case.
DEMO_CASE_SEARCH = 20
# 32 x 32 frames are hard to see; each pixel becomes an UPSCALE x UPSCALE block in the written videos.
UPSCALE = 8
VIDEO_NAMES = ("reference", "baseline", "lmp")
DISPLAY_NAMES = {"reference": "reference", "baseline": "baseline (no plugins)", "lmp": "LMP"}
EXIT_MODEL_MISSING = 2
EXIT_BAD_ARGUMENTS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from attnkit_lmp.toy.measure import DEFAULT_STEPS

    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (created)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="toy pipeline folder (default: the model bundled in the package)",
    )
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"denoising steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial noise (shared by baseline and LMP)"
    )
    # The toy model's tensors are too small to gain from threads: on a busy 2-core machine 2 threads took
    # 134 s where 1 took 20 s (spinning workers), so one thread is the default.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import torch

    from attnkit_lmp.toy.pretrained import ToyModelMissingError, load_toy_pipeline

    started = time.perf_counter()
    if args.steps < 1 or args.threads < 1:
        print(f"error: --steps {args.steps} and --threads {args.threads} must be at least 1", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    torch.set_num_threads(args.threads)
    try:
        pipe = load_toy_pipeline(args.model)
    except ToyModelMissingError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_MODEL_MISSING
    pipe.set_progress_bar_config(disable=True)  # the demo shows its own bars, one per run
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings = {"load": time.perf_counter() - started}

    report = generate_and_score(pipe, args.steps, args.seed, progress=not args.no_progress, timings=timings)
    written = write_outputs(out, report, timings, progress=not args.no_progress)
    timings["total"] = time.perf_counter() - started

    metrics = metrics_document(report, args, timings, written)
    from attnkit.record.atomic import atomic_write_bytes

    atomic_write_bytes(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    print()
    print(
        f"reference: {report['case'].reference.prompt!r} ({report['case'].reference.trajectory} path, held out)"
        f" -> target: {report['case'].prompt!r}, {args.steps} steps"
    )
    print(demo_table(report["scores"]))
    print(f"wrote {', '.join(sorted(written + ['metrics.json']))} to {out}/ in {timings['total']:.1f} s")
    return 0


def demo_case(world=None):
    """The demo's :class:`~attnkit_lmp.toy.measure.TransferCase`: the first held-out test case of
    ``world`` whose reference has a distractor (when the world has distractors), else the first case.
    The same every run, and not picked by its result."""
    from attnkit_lmp.toy.measure import measurement_cases
    from attnkit_lmp.toy.world import DEFAULT_WORLD

    cases = measurement_cases(DEMO_CASE_SEARCH, "test", world=world or DEFAULT_WORLD)
    if (world or DEFAULT_WORLD).distractor_size:
        return next((case for case in cases if case.reference.distractor is not None), cases[0])
    return cases[0]


def generate_and_score(
    pipe, steps: int, seed: int, progress: bool = True, timings: dict | None = None
) -> dict:
    """Render the reference, run baseline and LMP from the same noise, and score both."""
    import dataclasses

    import torch

    from attnkit_lmp.toy.measure import model_defaults_of, run_baseline, run_lmp, toy_lmp_config
    from attnkit_lmp.toy.scores import score_transfer
    from attnkit_lmp.toy.model import toy_config_of
    from attnkit_lmp.toy.world import render_clip

    timings = timings if timings is not None else {}
    model = toy_config_of(pipe)
    case = dataclasses.replace(demo_case(model.world), noise_seed=seed)
    clip = render_clip(case.reference, model.world)
    config = toy_lmp_config(steps, model=model, defaults=model_defaults_of(pipe))

    baseline = run_baseline(pipe, case.prompt, config, case.noise_seed, progress=progress)
    timings["baseline"] = baseline.seconds

    lmp = run_lmp(pipe, clip, case, config, progress=progress)
    timings["lmp"] = lmp.seconds
    started = time.perf_counter()
    scores = {
        "baseline": score_transfer(baseline.frames, clip, case),
        "lmp": score_transfer(lmp.frames, clip, case, lmp.fbdm_records),
    }
    timings["score"] = time.perf_counter() - started
    reference_frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255
    return {
        "case": case,
        "clip": clip,
        "config": lmp.config,
        "videos": {"reference": reference_frames, "baseline": baseline.frames, "lmp": lmp.frames},
        "fbdm_records": lmp.fbdm_records,
        "asm_losses": lmp.asm_losses,
        "scores": scores,
        "num_layers": pipe.transformer.config.num_layers,
    }


def write_outputs(out: Path, report: dict, timings: dict, progress: bool = True) -> list[str]:
    """Videos (mp4 + gif), the side-by-side comparison and the FBDM explorer; returns the file names written."""
    from tqdm.auto import tqdm

    from attnkit_lmp.video_io import write_video

    started = time.perf_counter()
    fps = report["config"].fps
    videos = report["videos"]
    case = report["case"]
    prompts = {"reference": case.reference.prompt, "baseline": case.prompt, "lmp": case.prompt}
    comparison = labelled_row(
        [(f"{DISPLAY_NAMES[name]}: {prompts[name]}", videos[name]) for name in VIDEO_NAMES]
    )
    jobs = [(f"{name}{suffix}", videos[name], UPSCALE) for name in VIDEO_NAMES for suffix in (".mp4", ".gif")]
    jobs += [(f"comparison{suffix}", comparison, 1) for suffix in (".mp4", ".gif")]
    written = []
    for file_name, frames, upscale in tqdm(jobs, desc="writing videos", unit="file", leave=False, disable=not progress):
        write_video(out / file_name, frames, fps=fps, upscale=upscale)
        written.append(file_name)
    write_fbdm_explorer(out / "fbdm_explorer.html", report)
    written.append("fbdm_explorer.html")
    timings["write"] = time.perf_counter() - started
    return written


def labelled_row(videos: list[tuple[str, object]], upscale: int = UPSCALE, gap: int = 4, line_height: int = 18):
    """Videos ``(F, 3, H, W)`` in [0, 1] upscaled and placed left to right, each under its label (wrapped to
    the panel's width), white gaps."""
    import cv2
    import torch

    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45

    def wrap(text: str, width: int) -> list[str]:
        lines = [""]
        for word in text.split():
            candidate = f"{lines[-1]} {word}".strip()
            if lines[-1] and cv2.getTextSize(candidate, font, scale, 1)[0][0] > width - 8:
                lines.append(word)
            else:
                lines[-1] = candidate
        return lines

    panels = []
    wrapped = [wrap(name, frames.shape[-1] * upscale) for name, frames in videos]
    label_height = line_height * max(len(lines) for lines in wrapped) + 6
    for index, ((_, frames), lines) in enumerate(zip(videos, wrapped)):
        frames = frames.detach().float().cpu().clamp(0, 1)
        frames = frames.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3)
        count, _, _, width = frames.shape
        label = np.full((label_height, width, 3), 255, dtype=np.uint8)
        for line_index, line in enumerate(lines):
            baseline_y = line_height * (line_index + 1)
            cv2.putText(label, line, (4, baseline_y), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        label = torch.from_numpy(label).permute(2, 0, 1).float().div(255).expand(count, -1, -1, -1)
        panels.append(torch.cat([label, frames], dim=2))
        if index < len(videos) - 1:
            panels.append(torch.ones(count, 3, panels[-1].shape[2], gap))
    return torch.cat(panels, dim=3)


def fbdm_record(report: dict):
    """FBDM's history as an :class:`attnkit.record.AttentionRecord`: per refresh step, the subject map,
    the thresholded mask, and the ground-truth mask pooled to the latent grid (three "tokens")."""
    import torch

    from attnkit.record import AttentionRecord
    from attnkit_lmp.toy.scores import ground_truth_on_grid

    records = report["fbdm_records"]
    if not records:
        raise ValueError(
            "LMP ran without FBDM, so there is no foreground mask to show; enable_fbdm must be on"
        )
    grid = tuple(records[0].mask.shape)
    truth = torch.from_numpy(ground_truth_on_grid(report["clip"].masks, grid)).float()
    maps = torch.stack(
        [torch.stack([record.attention_map.float(), record.mask.float(), truth])[None] for record in records]
    )  # (steps, 1 layer slot, 3 "tokens", frames, h, w)
    case = report["case"]
    subject = " ".join(case.reference_subject)
    config = report["config"]
    layers = config.fbdm_layers if config.fbdm_layers is not None else list(range(report["num_layers"]))
    return AttentionRecord(
        maps={"reference": maps},
        grid=grid,
        tokens=[
            f"{subject}: FBDM map (min-max per frame)",
            f"{subject}: FBDM mask (>= {config.fg_threshold})",
            "ground-truth mask (pooled)",
        ],
        token_positions=[[], [], []],
        steps=[record.step for record in records],
        timesteps=[None] * len(records),
        layers=layers,
        layer_names=[f"layer {layer}" for layer in layers],
        direction="both",
        layer_reduction="mean",
        model_class="toy CogVideoXTransformer3DModel",
        pipeline_class="CogVideoXPipeline",
        prompt=case.reference.prompt,
    )


def write_fbdm_explorer(path: Path, report: dict) -> Path:
    """The FBDM masks as the attnkit explorer page (step slider, map/mask/ground-truth menu, reference overlay)."""
    from attnkit.viz import write_explorer

    record = fbdm_record(report)
    subject = " ".join(report["case"].reference_subject)
    description = (
        f"What FBDM found in the reference video, per denoising step (slider). The menu picks one of three"
        f" maps over the reference frames: how strongly the subject words '{subject}' and each video token"
        " attend to each other (both directions, averaged over heads and FBDM's layers, scaled to 0..1 per"
        f" latent frame); that map at or above fg_threshold = {report['config'].fg_threshold}, the foreground"
        " RMTM shares with the target at the next step; and the ground truth, the rendered subject's mask"
        " pooled to the token grid. A good mask looks like the ground truth and leaves out the background"
        " and any distractor. docs/method.md explains the method."
    )
    return write_explorer(record, path, frames=report["clip"].frames, description=description)


def demo_table(scores: dict[str, dict]) -> str:
    """The printed comparison: MF (centroid and grid tracks), path error (and its controls), look kept."""
    from attnkit_lmp.toy.measure import format_table

    columns = (
        ("MF centroid", "motion_fidelity_centroid", "{:.3f}"),
        ("MF grid", "motion_fidelity_grid", "{:.3f}"),
        ("path error px", "path_error", "{:.2f}"),
        ("vs reversed px", "path_error_reversed", "{:.2f}"),
        ("extent", "motion_extent", "{:.2f}"),
        ("colour", "colour", "{}"),
        ("shape", "shape", "{}"),
        ("look kept", "appearance_kept", "{}"),
    )
    return format_table(scores, columns)


def metrics_document(report: dict, args: argparse.Namespace, timings: dict, written: list[str]) -> dict:
    """Everything needed to read and rerun the demo: case, scores, LMP config, timings, versions."""
    import torch

    case = report["case"]
    return {
        "what": "LMP motion transfer vs the stock pipeline on the bundled toy CogVideoX model",
        "model": str(args.model or "bundled (attnkit_lmp/toy/pretrained)"),
        "reference": {
            **case.reference.to_dict(),
            "prompt": case.reference.prompt,
            "subject": case.reference_subject,
        },
        "target": {"prompt": case.prompt, "subject": case.subject},
        "noise_seed": case.noise_seed,
        "scores": _json_ready(report["scores"]),
        "config": report["config"].to_dict(),
        "fbdm_mask_steps": [record.step for record in report["fbdm_records"]],
        "asm_loss_first_last": _json_ready(
            [report["asm_losses"][0], report["asm_losses"][-1]] if report["asm_losses"] else []
        ),
        "seconds": {name: round(value, 2) for name, value in timings.items()},
        "files": sorted(written),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def _json_ready(value):
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN; a metric that could not be measured is null
    return value


register_command(
    "demo",
    "copy a held-out toy clip's motion with LMP vs the baseline; writes videos, comparison, explorer, metrics.json",
    add_arguments,
    run,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnkit_lmp.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
