"""The ``measure`` command of the toy world: ``attnkit-lmp toy measure`` (and ``python -m attnkit_lmp.toy measure``)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from attnkit_lmp.methods import METHODS_BY_VARIANT

from .cases import SPLITS, TransferCase, measurement_cases
from .measurement import measure
from .search import search, searched_defaults
from .settings import DEFAULT_STEPS, LAYER_SETS, MeasureError, model_defaults_of, parse_overrides, toy_lmp_config
from .summary import check_goals, format_table
from .variants import VARIANTS


def add_measure_parser(subparsers) -> None:
    """Add the ``measure`` sub-command to an ``argparse`` sub-parser collection."""
    parser = subparsers.add_parser(
        "measure", help="measure LMP motion transfer vs baseline and ablations on held-out toy clips"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (report.json, records.jsonl, table.txt)"
    )
    parser.add_argument("--model", default=None, help="toy pipeline folder (default: the bundled model)")
    parser.add_argument("--clips", type=int, default=24, help="number of reference clips (default 24)")
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"denoising steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="test", help="test (report) or validation (tuning)"
    )
    parser.add_argument("--first-seed", type=int, default=0, help="first clip seed within the split")
    parser.add_argument(
        "--noise-seeds", type=int, default=1, help="initial noises per clip; the summary gives their spread"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(METHODS_BY_VARIANT),
        default=list(VARIANTS),
        help=f"methods of attnkit_lmp.methods to run (default: {' '.join(VARIANTS)})",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an LMPConfig field or a *_steps_fraction, e.g. --set fg_threshold=0.3 (repeatable); "
        f"*_layers also take a named set: {', '.join(LAYER_SETS)}",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)"
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="coordinate-search the LMP [choice] settings (SEARCH_SPACE) instead; needs --split validation",
    )
    parser.add_argument(
        "--write-defaults",
        action="store_true",
        help="with --search: write the best settings to the model folder's lmp_defaults.json, which "
        "attnkit-lmp transfer, the demo and later measurements of that folder then use",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run_measure_cli)


def run_measure_cli(args: argparse.Namespace) -> int:
    import sys

    import torch

    from attnkit.record.atomic import atomic_write_bytes
    from attnkit_lmp.config import LMPConfigError
    from attnkit_lmp.toy.model import toy_config_of
    from attnkit_lmp.toy.pretrained import ToyModelMissingError, load_toy_pipeline

    if args.write_defaults and not args.search:
        print("error: --write-defaults writes what --search found; pass --search --split validation", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        overrides = parse_overrides(args.set)
        pipe = load_toy_pipeline(args.model)
        model = toy_config_of(pipe)
        cases = measurement_cases(args.clips, args.split, args.first_seed, model.world, args.noise_seeds)
        defaults = model_defaults_of(pipe)
        config = toy_lmp_config(args.steps, model=model, defaults=defaults, **overrides)
    except (MeasureError, LMPConfigError, ToyModelMissingError, TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pipe.set_progress_bar_config(disable=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.search:
        return _run_search(pipe, cases, args)
    log_path = args.out / "records.jsonl"
    log_path.write_text("")

    def append(record):
        with log_path.open("a") as log:
            log.write(json.dumps(record) + "\n")

    started = time.perf_counter()
    report = measure(
        pipe, cases, config, tuple(args.variants), progress=not args.no_progress, on_record=append
    )
    report["goals_centroid_mf"] = check_goals(report["summary"], "motion_fidelity_centroid")
    report["goals_grid_mf"] = check_goals(report["summary"], "motion_fidelity_grid")
    report["settings"] = {
        "model": str(args.model or "bundled"),
        "split": args.split,
        "clips": args.clips,
        "first_seed": args.first_seed,
        "noise_seeds": args.noise_seeds,
        "variants": list(args.variants),
        "threads": args.threads,
        "seconds_total": round(time.perf_counter() - started, 1),
        "lmp_defaults": str(defaults.path) if defaults is not None else None,
        "config": config.to_dict(),
        "cases": [case.to_dict() for case in cases],
    }
    table = format_table(report["summary"])
    atomic_write_bytes(args.out / "report.json", (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(args.out / "table.txt", (table + "\n").encode())
    print(table)
    for name in ("goals_centroid_mf", "goals_grid_mf"):
        print(name, json.dumps(report[name]))
    print(f"report written to {args.out / 'report.json'}")
    return 0


def _run_search(pipe, cases: list[TransferCase], args: argparse.Namespace) -> int:
    import sys

    from attnkit.record.atomic import atomic_write_bytes

    if args.split != "validation":
        print(
            f"error: --search tunes hyper-parameters, so it must not see the reported clips: got --split {args.split},"
            " pass --split validation",
            file=sys.stderr,
        )
        return 2
    log_path = args.out / "search.jsonl"
    log_path.write_text("")

    def append(trial):
        with log_path.open("a") as log:
            log.write(json.dumps(trial) + "\n")
        summary = trial["summary"]
        print(
            f"objective {trial['objective']:.3f}  MF centroid {summary.get('motion_fidelity_centroid', 0):.3f}"
            f"  MF grid {summary.get('motion_fidelity_grid', 0):.3f}  look kept {summary.get('appearance_kept', 0):.0%}"
            f"  {json.dumps(trial['overrides'])}",
            flush=True,
        )

    best, trials = search(pipe, cases, args.steps, progress=not args.no_progress, on_trial=append)
    result = {
        "best_overrides": best,
        "trials": trials,
        "settings": {"clips": args.clips, "steps": args.steps},
    }
    atomic_write_bytes(args.out / "search.json", (json.dumps(result, indent=1) + "\n").encode())
    print(f"best: {json.dumps(best)}")
    if args.write_defaults:
        _write_searched_defaults(pipe, best, args)
    return 0


def _write_searched_defaults(pipe, best: dict, args: argparse.Namespace) -> None:
    from attnkit.record.atomic import atomic_write_bytes
    from attnkit_lmp.model_defaults import DEFAULTS_FILE
    from attnkit_lmp.toy.model import toy_config_of

    folder = Path(pipe.name_or_path)
    about = (
        f"Settings the coordinate search chose on {args.clips} validation clips with {args.steps} steps "
        f"(python -m attnkit_lmp.toy measure --split validation --search --write-defaults); "
        f"docs/toy-measurement.md. Searched from {toy_config_of(pipe).architecture} weights at "
        f"training step {_training_step(folder)}."
    )
    document = searched_defaults(best, toy_config_of(pipe), model_defaults_of(pipe), about)
    atomic_write_bytes(folder / DEFAULTS_FILE, (json.dumps(document, indent=2) + "\n").encode())
    print(f"wrote {folder / DEFAULTS_FILE}")


def _training_step(folder: Path):
    from attnkit_lmp.toy.model import TOY_CONFIG_FILE

    try:
        return json.loads((folder / TOY_CONFIG_FILE).read_text()).get("step")
    except (OSError, ValueError):
        return None
