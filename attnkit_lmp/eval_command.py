"""The ``attnkit-lmp eval`` command: a resumable Table 1 sweep, on one process or data-parallel (accelerate).

    attnkit-lmp eval --dataset DAVIS --prompts prompts.yaml --model /models/CogVideoX-5b \\
        --methods baseline,lmp,lmp-no-fbdm,lmp-no-asm --clip /models/clip-vit-large-patch14 --out runs/table1
    accelerate launch --num_processes 8 -m attnkit_lmp.cli eval ...      # one shard per process

Rerunning the same command skips finished items whose inputs are unchanged (also after a kill), and
recomputes those whose inputs changed. Everything that can be checked is checked before the model
generates anything; a problem, or a NaN in a generation, exits with status 2 and says what to fix.

The sweep itself is :mod:`attnkit_lmp.eval.sweep`; this command lives beside the other commands rather than
in ``eval`` because it also hands the sweep the toy world's checks (``--toy-metrics``), and the evaluation
package does not depend on the toy world.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cli import register_command
from .methods import DEFAULT_METHODS, METHODS
from .threads import add_threads_argument, default_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", type=Path, required=True, help="DAVIS-layout folder (JPEGImages/, Annotations/)"
    )
    parser.add_argument(
        "--prompts", type=Path, required=True, help="prompts file of the three splits (YAML or JSON)"
    )
    parser.add_argument(
        "--model", required=True, help="local diffusers CogVideoX text-to-video folder"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; rerun to resume)")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated rows of the table, from {', '.join(METHODS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--splits", default="ori,sub,back", help="comma-separated splits (default: %(default)s)"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated noise seeds (default: %(default)s)")
    parser.add_argument("--videos", default=None, help="comma-separated subset of the prompts file's videos")
    parser.add_argument(
        "--tracker", default="lk", choices=["lk", "centroid", "cotracker"], help="MF point tracker"
    )
    parser.add_argument("--grid-size", type=int, default=55, help="tracked grid per side (paper: 55)")
    parser.add_argument(
        "--track-upscale", type=int, default=1, help="enlarge frames N x before tracking (tiny videos)"
    )
    parser.add_argument(
        "--min-displacement",
        type=float,
        default=None,
        help="MF: px per frame below which a point stands still",
    )
    parser.add_argument("--cotracker-checkpoint", type=Path, help="CoTracker weights (scaled_offline.pth)")
    parser.add_argument("--cotracker-repo", type=Path, help="local clone of facebookresearch/co-tracker")
    parser.add_argument("--clip", type=Path, help="local openai/clip-vit-large-patch14 folder (Align, Cons.)")
    parser.add_argument("--pickscore", type=Path, help="local yuvalkirstain/PickScore_v1 folder (Pick.)")
    parser.add_argument(
        "--pickscore-processor", type=Path, help="local laion/CLIP-ViT-H-14-laion2B-s32B-b79K folder"
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="LMPConfig (JSON/YAML) all methods start from, over the model folder's lmp_defaults.json "
        "(default: that file, else the paper's)",
    )
    parser.add_argument(
        "--steps", type=int, help="denoising steps; the module thresholds are scaled to it"
    )
    parser.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale")
    parser.add_argument(
        "--toy-metrics", action="store_true", help="add the toy world's path error and appearance checks"
    )
    parser.add_argument(
        "--no-annotations", action="store_true", help="the dataset has no masks (not with --tracker centroid)"
    )
    parser.add_argument("--dtype", default="float32", help="weights dtype: float32, bf16, fp16")
    parser.add_argument(
        "--device", default=None, help="torch device (default: accelerate's for this process)"
    )
    add_threads_argument(parser, per_process=True)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def settings_from_args(args: argparse.Namespace):
    from .eval.motion_fidelity import DEFAULT_MIN_DISPLACEMENT
    from .eval.sweep import SweepError, SweepSettings

    try:
        seeds = tuple(int(seed) for seed in _list(args.seeds))
    except ValueError:
        raise SweepError(f"--seeds {args.seeds!r} must be comma-separated integers, e.g. 0,1,2") from None
    return SweepSettings(
        dataset=args.dataset,
        prompts=args.prompts,
        model=args.model,
        out=args.out,
        methods=tuple(_list(args.methods)),
        splits=tuple(_list(args.splits)),
        seeds=seeds,
        videos=tuple(_list(args.videos)) if args.videos else None,
        tracker=args.tracker,
        grid_size=args.grid_size,
        min_displacement=DEFAULT_MIN_DISPLACEMENT if args.min_displacement is None else args.min_displacement,
        track_upscale=args.track_upscale,
        cotracker_checkpoint=args.cotracker_checkpoint,
        cotracker_repo=args.cotracker_repo,
        clip=args.clip,
        pickscore=args.pickscore,
        pickscore_processor=args.pickscore_processor,
        config=args.config,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        extra_metrics=toy_metrics() if args.toy_metrics else (),
        require_annotations=not args.no_annotations,
        dtype=args.dtype,
        device=args.device,
        threads=args.threads if args.threads is not None else default_threads(per_process=True),
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    started_at = time.perf_counter()
    from .eval.datasets import DatasetError, PromptsFileError
    from .eval.results import ResultsFileError, SweepLockedError
    from .eval.sweep import SweepError, run_sweep

    from attnkit import AttnkitError

    try:
        summary = run_sweep(settings_from_args(args), started_at=started_at)
    except (SweepError, PromptsFileError, DatasetError, ResultsFileError, SweepLockedError, AttnkitError) as error:
        print(f"attnkit-lmp eval: error: {error}", file=sys.stderr)
        return 2
    print(summary.describe())
    for name, path in summary.report.items():
        print(f"wrote {name}: {path}")
    return 0


def toy_metrics() -> tuple:
    """The toy world's checks as the sweep's extra metrics."""
    from .toy.scores import ToyWorldMetrics

    return (ToyWorldMetrics(),)


def _list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


register_command(
    "eval", "evaluate methods over a dataset and write Table 1 (resumable, data-parallel)", add_arguments, run
)
