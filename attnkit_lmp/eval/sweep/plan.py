"""The plan of a sweep: its items (video, split, method, seed), in the order processes take them, and shards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...methods import Method
from ..datasets import EvalItem


@dataclass(frozen=True)
class SweepItem:
    """One generation to make and score: a (video, split) of the prompts file, a method and a seed."""

    target: EvalItem
    method: Method
    seed: int

    @property
    def key(self) -> str:
        """``<video>/<split>/<method>/seed<seed>``: the item's name in results files and on disk."""
        return f"{self.target.video}/{self.target.split}/{self.method.name}/seed{self.seed}"

    @property
    def video_path(self) -> str:
        """Where the generated video goes, relative to the output folder."""
        return f"videos/{self.method.name}/{self.target.video}/{self.target.split}-seed{self.seed}.mp4"


def plan_items(
    targets: Sequence[EvalItem], methods: Sequence[Method], seeds: Sequence[int]
) -> list[SweepItem]:
    """Every item, video by video (then seed, split, method), so a process meets each video in one run."""
    by_video: dict[str, list[EvalItem]] = {}
    for target in targets:
        by_video.setdefault(target.video, []).append(target)
    return [
        SweepItem(target, method, seed)
        for video_targets in by_video.values()
        for seed in seeds
        for target in video_targets
        for method in methods
    ]


def shard(items: Sequence[SweepItem], rank: int, world_size: int) -> list[SweepItem]:
    """Process ``rank``'s items: every ``world_size``-th of the plan, starting at ``rank``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    return list(items[rank::world_size])
