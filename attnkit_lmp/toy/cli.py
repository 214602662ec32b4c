"""Argument parsing for the toy world's commands (``train``, ``quality``, ``measure``, ``diagnose``), reusable by ``attnkit-lmp toy``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from attnkit_lmp.cli import register_command
from attnkit_lmp.toy.model import ARCHITECTURES, ToyModelConfig
from attnkit_lmp.toy.train import CheckpointError, TrainConfig


def add_toy_commands(subparsers) -> None:
    """Add ``train`` and ``quality`` sub-commands to an ``argparse`` sub-parser collection."""
    train = subparsers.add_parser("train", help="train a toy pipeline (CogVideoX T2V or I2V, or Wan) on rendered clips")
    train.add_argument("--out", required=True, help="output folder (checkpoint.pt, pipeline/, train.log)")
    train.add_argument("--steps", type=int, required=True, help="total number of training steps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument(
        "--init-from", default=None, help="start a new run from this saved toy pipeline's weights (fine-tuning)"
    )
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)")
    train.add_argument("--device", default="cpu", help="where the model trains: cpu (default) or cuda")
    train.add_argument(
        "--data-workers", type=int, default=0, help="processes rendering clips ahead (default 0: in the loop)"
    )
    train.add_argument(
        "--time-limit-minutes",
        type=float,
        default=None,
        help="stop with a checkpoint after this much wall time; continue later with --resume",
    )
    train.add_argument("--checkpoint-every", type=int, default=250)
    train.add_argument("--log-every", type=int, default=25)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default=ToyModelConfig.architecture,
        help="the pipeline to train: CogVideoX (joint attention), its image-to-video form (first frame as"
        " condition; start it from a text-to-video toy with --init-from) or Wan 2.1 (self + cross attention;"
        " needs 4k + 1 frames, e.g. --num-frames 9)",
    )
    for item in fields(ToyModelConfig):
        if item.name == "backgrounds":
            train.add_argument(
                "--backgrounds",
                type=lambda text: tuple(text.split(",")),
                default=item.default,
                help=f"comma-separated backgrounds of the world, the default first (default: {','.join(item.default)})",
            )
        elif item.name != "architecture":
            train.add_argument(
                f"--{item.name.replace('_', '-')}", type=int, default=item.default, help="model/world size"
            )
    for item in fields(TrainConfig):
        train.add_argument(f"--{item.name.replace('_', '-')}", type=type(item.default), default=item.default)
    train.set_defaults(handler=_run_train)

    quality = subparsers.add_parser("quality", help="measure the toy model's quality bar")
    quality.add_argument("--model", default=None, help="pipeline folder (default: the bundled model)")
    quality.add_argument("--num-videos", type=int, default=50)
    quality.add_argument("--seed", type=int, default=0)
    quality.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: generation_kwargs)"
    )
    quality.add_argument("--guidance-scale", type=float, default=None)
    quality.add_argument("--batch-size", type=int, default=10)
    quality.add_argument("--threads", type=int, default=1)
    quality.add_argument("--json", default=None, help="write the report here (default: MODEL/quality.json)")
    quality.set_defaults(handler=_run_quality)

    from attnkit_lmp.toy.diagnose import add_diagnose_parser
    from attnkit_lmp.toy.fbdm_layers import add_fbdm_layers_parser
    from attnkit_lmp.toy.measure import add_measure_parser

    add_measure_parser(subparsers)
    add_diagnose_parser(subparsers)
    add_fbdm_layers_parser(subparsers)


def _run_train(args) -> int:
    from attnkit_lmp.toy.train import train

    model_config = ToyModelConfig(**{item.name: getattr(args, item.name) for item in fields(ToyModelConfig)})
    try:
        model_config.validate()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    train_config = TrainConfig(**{item.name: getattr(args, item.name) for item in fields(TrainConfig)})
    try:
        folder = train(
            args.out,
            steps=args.steps,
            seed=args.seed,
            resume=args.resume,
            model_config=model_config,
            train_config=train_config,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
            threads=args.threads,
            progress=not args.no_progress,
            init_from=args.init_from,
            device=args.device,
            data_workers=args.data_workers,
            time_limit_minutes=args.time_limit_minutes,
        )
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"trained pipeline saved to {folder}")
    return 0


def _run_quality(args) -> int:
    from attnkit_lmp.toy.quality import run_quality_cli

    return run_quality_cli(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnkit_lmp.toy", description=__doc__)
    add_toy_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def _add_toy_subcommand(parser: argparse.ArgumentParser) -> None:
    add_toy_commands(parser.add_subparsers(dest="toy_command", metavar="TOY_COMMAND", required=True))


def _run_toy_subcommand(args: argparse.Namespace) -> int:
    return args.handler(args)


# `attnkit-lmp toy train|quality|measure|diagnose ...`: the same commands as `python -m attnkit_lmp.toy`.
register_command(
    "toy",
    "the toy world: train, quality, measure, diagnose (the same as python -m attnkit_lmp.toy)",
    _add_toy_subcommand,
    _run_toy_subcommand,
)
