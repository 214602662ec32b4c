"""Which attention layers and which threshold make FBDM's mask match the reference subject?

FBDM averages its subject-attention map over a layer set and thresholds it (docs/method.md, "FBDM"); the
paper averages every layer and leaves the threshold open. On the toy world the subject's true mask is
known, so each choice can be scored. This runs LMP on validation cases with the model folder's own
settings, records the reference branch's map of every attention call
(:class:`attnkit_lmp.fbdm.FBDMLayerMaps`) and scores the mask that each layer set and threshold would have
made at FBDM's last refresh: IoU with the subject, share of all tokens, and share of the distractor's
tokens caught.

    python -m attnkit_lmp.toy fbdm-layers --model training/cogvideox-v2/pipeline --clips 12 --steps 25

The reference branch does not depend on the target, so the maps are those of any LMP run on the same
reference and noise; the masks are scored, not used (the run itself keeps its configured FBDM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnkit_lmp.fbdm import FBDMLayerMaps, normalise_per_frame
from attnkit_lmp.toy.scores import ground_truth_on_grid, mask_iou

DEFAULT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass
class MaskScore:
    """One layer set and threshold, averaged over the clips."""

    layers: str
    threshold: float
    iou: float
    foreground_fraction: float
    distractor_caught: float  # share of the distractor's tokens inside the mask (nan: no distractor)


def layer_sets_of(layers: list[int]) -> dict[str, list[int] | None]:
    """The named sets the search knows (all, first_half, last_half) and every single layer; a set equal to
    an earlier one (a half of a two-layer model is one layer) is listed once, under the earlier name."""
    half = max(1, len(layers) // 2)
    candidates = [("all", None), ("first_half", layers[:half]), ("last_half", layers[-half:])]
    candidates += [(f"layer {layer}", [layer]) for layer in layers]
    sets: dict[str, list[int] | None] = {}
    for name, layer_list in candidates:
        resolved = layers if layer_list is None else layer_list
        if all(resolved != (layers if other is None else other) for other in sets.values()):
            sets[name] = layer_list
    return sets


def score_masks(recordings: list[tuple[FBDMLayerMaps, object]], step: int, thresholds=DEFAULT_THRESHOLDS):
    """Score each layer set and threshold at ``step`` over ``(recorder, clip)`` pairs; best IoU first."""
    layers = recordings[0][0].recorded_layers()
    scores = []
    for name, layer_list in layer_sets_of(layers).items():
        for threshold in thresholds:
            ious, fractions, caught = [], [], []
            for recorder, clip in recordings:
                mask = (normalise_per_frame(recorder.layer_map(layer_list, step)) >= threshold).numpy()
                ious.append(mask_iou(mask, ground_truth_on_grid(clip.masks, mask.shape)))
                fractions.append(float(mask.mean()))
                if clip.distractor_masks is not None:
                    distractor = ground_truth_on_grid(clip.distractor_masks, mask.shape)
                    if distractor.any():
                        caught.append(float((mask & distractor).sum() / distractor.sum()))
            scores.append(
                MaskScore(
                    name,
                    threshold,
                    float(np.mean(ious)),
                    float(np.mean(fractions)),
                    float(np.mean(caught)) if caught else float("nan"),
                )
            )
    return sorted(scores, key=lambda score: -score.iou)


def run_with_layer_maps(pipe, case, config, world=None):
    """LMP (``config``) on one case with an :class:`FBDMLayerMaps` beside it: ``(recorder, clip, result)``,
    ``result`` being the :class:`~attnkit_lmp.transfer.MotionTransferResult` (FBDM's own masks included)."""
    from attnkit_lmp.toy.measure import world_of
    from attnkit_lmp.toy.world import render_clip
    from attnkit_lmp.transfer import motion_transfer, prepare_transfer

    clip = render_clip(case.reference, world if world is not None else world_of(pipe))
    arguments = dict(
        reference=clip.frames,
        reference_prompt=clip.prompt,
        reference_subject=case.reference_subject,
        prompt=case.prompt,
        subject=case.subject,
    )
    # The recorder needs the subject's token positions before the run; resolving them is cheap (no model call).
    plan = prepare_transfer(pipe, image=None, config=config, **arguments)
    recorder = FBDMLayerMaps(plan.reference_subject_tokens, steps=config.fbdm_steps)
    result = motion_transfer(
        pipe,
        **arguments,
        config=config,
        generator=torch.Generator().manual_seed(case.noise_seed),
        return_details=True,
        progress=False,
        plugins=[recorder],
    )
    return recorder, clip, result


def record_layer_maps(pipe, cases, config, progress: bool = True) -> list[tuple[FBDMLayerMaps, object]]:
    """Run LMP (``config``) on each case with an :class:`FBDMLayerMaps`; ``(recorder, clip)`` per case."""
    from tqdm.auto import tqdm

    from attnkit_lmp.toy.measure import world_of

    world = world_of(pipe)
    recordings = []
    for case in tqdm(cases, desc="fbdm-layers", unit="clip", disable=not progress):
        recorder, clip, _ = run_with_layer_maps(pipe, case, config, world)
        recordings.append((recorder, clip))
    return recordings


def format_scores(scores: list[MaskScore], configured: tuple[str, float] | None = None, limit: int = 12) -> str:
    """The best ``limit`` rows, then the configured setting's row when it is not among them."""
    lines = [f"{'layers':<11} {'threshold':>9} {'IoU':>6} {'mask share':>10} {'distractor caught':>17}"]

    def line(score: MaskScore, note: str = "") -> str:
        caught = "-" if np.isnan(score.distractor_caught) else f"{score.distractor_caught * 100:.0f}%"
        return (
            f"{score.layers:<11} {score.threshold:>9.2f} {score.iou:>6.2f} {score.foreground_fraction * 100:>9.0f}%"
            f" {caught:>17}{note}"
        )

    shown = scores[:limit]
    for score in shown:
        mark = configured is not None and (score.layers, score.threshold) == configured
        lines.append(line(score, "  <- configured" if mark else ""))
    if configured is not None and not any((s.layers, s.threshold) == configured for s in shown):
        for score in scores:
            if (score.layers, score.threshold) == configured:
                lines.append(line(score, "  <- configured"))
    return "\n".join(lines)


def configured_row(config, layers: list[int]) -> tuple[str, float]:
    """The ``(layer set name, threshold)`` of ``config``'s FBDM among :func:`layer_sets_of`, when named there."""
    configured = None if config.fbdm_layers is None else sorted(config.fbdm_layers)
    if configured == layers:
        configured = None  # every layer, listed as "all"
    for name, layer_list in layer_sets_of(layers).items():
        if layer_list == configured:
            return name, config.fg_threshold
    return "", config.fg_threshold


def add_fbdm_layers_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fbdm-layers", help="score FBDM's mask per layer set and threshold against the reference's true mask"
    )
    parser.add_argument("--model", default=None, help="pipeline folder (default: the bundled model)")
    parser.add_argument("--clips", type=int, default=12, help="validation reference clips (default 12)")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    parser.add_argument(
        "--thresholds",
        default=",".join(map(str, DEFAULT_THRESHOLDS)),
        help="comma-separated fg_threshold values in [0, 1]",
    )
    parser.add_argument("--rows", type=int, default=12, help="best rows to print (default 12)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_run_fbdm_layers)


def _run_fbdm_layers(args) -> int:
    from attnkit_lmp.toy.measure import measurement_cases, world_of
    from attnkit_lmp.toy.measure.settings import model_defaults_of, toy_lmp_config
    from attnkit_lmp.toy.model import toy_config_of
    from attnkit_lmp.toy.pretrained import load_toy_pipeline

    try:
        thresholds = [float(value) for value in args.thresholds.split(",") if value.strip()]
    except ValueError:
        raise SystemExit(f"--thresholds {args.thresholds!r}: expected comma-separated numbers, e.g. 0.4,0.6")
    if not thresholds or not all(0 <= value <= 1 for value in thresholds):
        raise SystemExit(f"--thresholds {args.thresholds!r}: expected values in [0, 1], e.g. 0.4,0.6")
    if args.clips < 1:
        raise SystemExit(f"--clips {args.clips}: expected at least 1 clip")
    if args.rows < 1:
        raise SystemExit(f"--rows {args.rows}: expected at least 1 row")
    torch.set_num_threads(args.threads)
    pipe = load_toy_pipeline(args.model)
    config = toy_lmp_config(args.steps, model=toy_config_of(pipe), defaults=model_defaults_of(pipe))
    if config.fbdm_steps < 1:
        raise SystemExit(f"fbdm_steps is {config.fbdm_steps} at --steps {args.steps}: FBDM never refreshes its mask")
    cases = measurement_cases(args.clips, "validation", world=world_of(pipe))
    recordings = record_layer_maps(pipe, cases, config, progress=not args.no_progress)
    last_refresh = recordings[0][0].recorded_steps()[-1]
    scores = score_masks(recordings, last_refresh, thresholds)
    grid = tuple(recordings[0][0].layer_map(None, last_refresh).shape)
    subject_share = np.mean([ground_truth_on_grid(clip.masks, grid).mean() for _, clip in recordings])
    print(
        f"FBDM's mask at its last refresh (step {last_refresh} of {args.steps}) on {len(cases)} validation clips;"
        f" the subject covers {subject_share * 100:.0f}% of the tokens"
    )
    print(format_scores(scores, configured_row(config, recordings[0][0].recorded_layers()), limit=args.rows))
    return 0
