"""The ``attnkit-lmp annotate`` command: a local vision-language model writes the prompts file of a dataset.

    attnkit-lmp annotate --dataset DAVIS --model /models/Qwen2.5-VL-7B-Instruct --out prompts.yaml

The annotation itself is :mod:`attnkit_lmp.eval.annotate`, the model :mod:`attnkit_lmp.eval.vision_language_model`.
An answer that cannot be used is reported with its text and left out (exit status 1); other errors exit
with status 2 and say what to fix. The model is loaded only when some video is left to annotate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import register_command
from .eval.annotate import DEFAULT_NUM_FRAMES, AnnotationError, AnnotationResult, annotate, plan_annotation
from .eval.datasets import DEFAULT_RESOLUTION, DatasetError, PromptsFileError
from .eval.vision_language_model import (
    DEFAULT_MAX_NEW_TOKENS,
    DTYPES,
    RECOMMENDED_MODEL,
    AnnotationModelError,
    AnnotationModelNotFoundError,
    VisionLanguageModel,
    check_model_folder,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", type=Path, required=True, help="DAVIS-layout folder (JPEGImages/[480p/]<video>/...)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        help=f"local image-text-to-text model folder with a chat template, e.g. a copy of {RECOMMENDED_MODEL}",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="prompts file to write (.yaml or .json); rerun to resume"
    )
    parser.add_argument("--videos", default=None, help="comma-separated subset of the dataset's videos")
    parser.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_NUM_FRAMES,
        help="evenly spaced frames shown per video (default: %(default)s)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="longest answer in tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="annotate again the videos already in --out"
    )
    parser.add_argument(
        "--resolution", default=DEFAULT_RESOLUTION, help="DAVIS resolution folder (default: %(default)s)"
    )
    parser.add_argument(
        "--dtype", default="auto", choices=list(DTYPES), help="weights dtype (default: as stored)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        if args.frames < 1 or args.max_new_tokens < 1:
            raise AnnotationError(
                f"--frames {args.frames} and --max-new-tokens {args.max_new_tokens} must both be at least 1"
            )
        check_model_folder(args.model)
        videos = [name.strip() for name in (args.videos or "").split(",") if name.strip()]
        plan = plan_annotation(args.dataset, args.out, videos, args.overwrite, args.resolution)
        if plan.pending:
            model = VisionLanguageModel.from_path(
                args.model, device=args.device, dtype=args.dtype, max_new_tokens=args.max_new_tokens
            )
            result = annotate(plan, model.answer, num_frames=args.frames, progress=not args.no_progress)
        else:  # nothing to ask: the model is not loaded
            result = AnnotationResult(out=plan.out, skipped=list(plan.skipped))
    except (
        AnnotationError,
        AnnotationModelError,
        AnnotationModelNotFoundError,
        DatasetError,
        PromptsFileError,
    ) as error:
        print(f"attnkit-lmp annotate: error: {error}", file=sys.stderr)
        return 2
    for failure in result.failed.values():
        print(f"attnkit-lmp annotate: {failure}", file=sys.stderr)
    print(result.describe())
    return 1 if result.failed else 0


register_command(
    "annotate",
    "write a dataset's prompts file with a local vision-language model (resumable)",
    add_arguments,
    run,
)
