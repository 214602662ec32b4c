"""``attnkit viz RECORD --token dog --out maps.html``: turn a record file into the explorer page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = (
    "Write a self-contained HTML page (works offline) exploring a record saved by attnkit.record: "
    "heatmaps of the latent frames with sliders over step and layer and a token menu, plus a per-layer/"
    "per-step concentration summary."
)


def add_viz_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "viz", help="write an HTML explorer for an attention record", description=DESCRIPTION
    )
    parser.add_argument("record", type=Path, help="record file (.safetensors) written by save_record")
    parser.add_argument(
        "--token", help="token shown first, by word or text position (default: the record's first)"
    )
    parser.add_argument("--out", type=Path, help="HTML file to write (default: RECORD with the suffix .html)")
    parser.add_argument(
        "--layer",
        type=int,
        action="append",
        help="offer only this layer (repeatable; default all, plus their mean)",
    )
    parser.add_argument(
        "--step", type=int, action="append", help="offer only this denoising step (repeatable; default all)"
    )
    parser.add_argument("--branch", help="branch to show, e.g. cond, uncond, reference (default: cond)")
    parser.add_argument(
        "--video", type=Path, help="decoded video (any format imageio reads) to draw the maps over"
    )
    parser.add_argument(
        "--top-fraction",
        type=float,
        default=0.1,
        help="summary: share of video tokens whose mass is shown (default 0.1)",
    )
    parser.add_argument(
        "--shared-plotlyjs",
        action="store_true",
        help="load plotly.js from plotly.min.js beside the page (written once per folder, so a folder of "
        "pages carries it once) instead of inlining it (about 4.5 MB a page)",
    )
    parser.set_defaults(handler=run_viz)
    return parser


def run_viz(args: argparse.Namespace) -> int:
    from .record import RecordFileError, RecordLookupError, load_record
    from .viz import write_explorer

    out = args.out if args.out is not None else args.record.with_suffix(".html")
    try:
        record = load_record(args.record)
        if record.is_empty:
            raise RecordLookupError(
                f"{args.record} holds no maps ({record.describe()}): the recorded run reached none of the "
                "recorded steps; record again with steps that the run takes"
            )
        frames = _read_video(args.video) if args.video is not None else None
        write_explorer(
            record,
            out,
            token=args.token,
            branch=args.branch,
            steps=args.step,
            layers=args.layer,
            frames=frames,
            top_fraction=args.top_fraction,
            plotlyjs="shared" if args.shared_plotlyjs else "inline",
        )
    except (RecordFileError, RecordLookupError, FileNotFoundError, ValueError) as error:
        print(f"attnkit viz: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _read_video(path: Path):
    import imageio.v3 as iio

    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist; pass the decoded video of the recorded run")
    return iio.imread(path)
