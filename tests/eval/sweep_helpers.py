"""Shared pieces of the sweep tests: a two-video toy dataset the tiny pipeline can take, and fast settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from attnkit.testing import saved_tiny_cogvideox_pipeline
from attnkit_lmp.eval.sweep import ProcessGroup, SweepSettings, run_sweep

TINY_NUM_FRAMES = 9  # the tiny CogVideoX pipeline generates 4k + 1 frames


def write_toy_dataset(root: Path, num_videos: int = 2, num_frames: int = TINY_NUM_FRAMES) -> Path:
    """Held-out toy clips in the DAVIS layout with their prompts.json (toy words are in the tiny vocabulary)."""
    from attnkit_lmp.toy.export import write_davis_layout
    from attnkit_lmp.toy.world import WorldConfig, random_clip_spec, render_clip

    clips = [
        render_clip(random_clip_spec(seed, "heldout"), WorldConfig(num_frames=num_frames))
        for seed in range(num_videos)
    ]
    return write_davis_layout(clips, root)


@pytest.fixture(scope="session")
def toy_dataset_master(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy-dataset"))


@pytest.fixture
def toy_dataset(toy_dataset_master, tmp_path) -> Path:
    """A private copy, so a test may damage it."""
    return Path(shutil.copytree(toy_dataset_master, tmp_path / "dataset"))


def video_names(dataset: Path) -> list[str]:
    return list(json.loads((dataset / "prompts.json").read_text())["videos"])


def fast_settings(dataset: Path, out: Path, **changes) -> SweepSettings:
    """Two steps of the tiny pipeline, an 8 x 8 Lucas-Kanade grid, no progress bars, one torch thread."""
    values = dict(
        dataset=dataset,
        prompts=dataset / "prompts.json",
        model=saved_tiny_cogvideox_pipeline("t2v"),
        out=out,
        methods=("baseline", "lmp"),
        splits=("ori", "sub"),
        seeds=(0,),
        grid_size=8,
        steps=2,
        threads=1,
        progress=False,
    )
    values.update(changes)
    return SweepSettings(**values)


def sweep(settings: SweepSettings):
    """One in-process sweep as a group of one (no accelerate state)."""
    return run_sweep(settings, group=ProcessGroup())


def result_lines(out: Path) -> list[str]:
    return [
        line
        for path in sorted((out / "results").glob("items-rank*.jsonl"))
        for line in path.read_text().splitlines()
    ]
