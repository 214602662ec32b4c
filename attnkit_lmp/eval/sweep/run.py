"""A whole sweep: check everything, run this process's pending items, and (process 0) write the table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ...model_defaults import describe_settings
from ..datasets import DatasetError, DavisDataset, load_prompts
from ..results import ResultsStore
from .checks import build_sweep_tracker, check_targets, check_videos, load_text_metrics, resolve_methods_or_fail
from .identity import current_records, item_identities
from .items import ItemRunner
from .plan import plan_items, shard
from .settings import (
    SweepError,
    SweepSettings,
    base_lmp_config,
    check_output_settings,
    tracker_name,
    write_settings,
)


@dataclass
class SweepSummary:
    """What one process did: items run and skipped, and where its time went."""

    rank: int
    world_size: int
    planned: int
    in_shard: int
    skipped: int
    ran: int
    stale: dict[str, list[str]] = field(default_factory=dict)
    """Items of this shard recomputed because what decides their numbers changed: key -> what changed."""
    generation_seconds: float = 0.0
    item_seconds: float = 0.0
    wall_seconds: float = 0.0
    repaired_bytes: int = 0
    report: dict[str, str] = field(default_factory=dict)
    plan_generation_seconds: float = 0.0
    """Process 0 only: generation seconds of every finished item of the plan, whichever process ran it."""
    plan_item_seconds: float = 0.0
    settings: str = ""
    """Where the LMP settings every method starts from came from (model folder, --config, flags)."""

    @property
    def item_overhead(self) -> float:
        """Share of the items' time not spent generating (reading, tracking, scoring, writing)."""
        return 1.0 - self.generation_seconds / self.item_seconds if self.item_seconds > 0 else 0.0

    @property
    def wall_overhead(self) -> float:
        """Share of the process's wall time not spent generating (also loading, checks, aggregation)."""
        return 1.0 - self.generation_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "item_overhead": self.item_overhead, "wall_overhead": self.wall_overhead}

    def describe(self) -> str:
        lines = [
            f"rank {self.rank}/{self.world_size}: {self.ran} item(s) run, {self.skipped} already done "
            f"(shard of {self.in_shard}, plan of {self.planned})"
        ]
        lines += [f"  {line}" for line in self.settings.splitlines()]
        if self.stale:
            changed = sorted({part for parts in self.stale.values() for part in parts})
            lines.append(
                f"  recomputed {len(self.stale)} item(s) whose inputs changed since their results were written "
                f"({', '.join(changed)}), e.g. {next(iter(self.stale))}"
            )
        if self.repaired_bytes:
            lines.append(
                f"  repaired a torn last line ({self.repaired_bytes} bytes) left by an interrupted run"
            )
        if self.ran:
            lines.append(
                f"  generation {self.generation_seconds:.1f} s of {self.item_seconds:.1f} s item time: harness "
                f"overhead {100 * self.item_overhead:.2f}% per item, {100 * self.wall_overhead:.2f}% of "
                f"{self.wall_seconds:.1f} s wall time (incl. loading and checks)"
            )
        if self.plan_item_seconds > 0:
            overhead = 1.0 - self.plan_generation_seconds / self.plan_item_seconds
            lines.append(
                f"  all finished items of the plan: generation {self.plan_generation_seconds:.1f} s of "
                f"{self.plan_item_seconds:.1f} s, harness overhead {100 * overhead:.2f}% per item"
            )
        return "\n".join(lines)


@dataclass
class ProcessGroup:
    """This process's place among the sweep's processes, and how to wait for the others."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None
    device: str = "cpu"


def current_process_group() -> ProcessGroup:
    """From ``accelerate`` (``accelerate launch`` sets it up; a plain run is a group of one).

    Without a GPU the processes talk over gloo on the CPU: accelerate only does so when told ``cpu``
    (its ``--cpu`` launcher needs MPI for several processes, while ``--multi_gpu`` starts them with
    torchrun, which also works on a machine without GPUs once the state is built with ``cpu=True``).
    """
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return ProcessGroup(state.process_index, state.num_processes, state.wait_for_everyone, str(state.device))


def run_sweep(
    settings: SweepSettings,
    group: ProcessGroup | None = None,
    started_at: float | None = None,
) -> SweepSummary:
    """Check everything, run this process's pending items, and (process 0) write the table; see module docstring."""
    started_at = time.perf_counter() if started_at is None else started_at
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    group = group or current_process_group()
    settings.tracker = tracker_name(settings.tracker)
    methods = resolve_methods_or_fail(settings.methods)
    base_config, sources = base_lmp_config(settings)
    if not settings.seeds:
        raise SweepError("no seeds given; pass --seeds 0 (or several, e.g. 0,1,2)")
    if settings.track_upscale < 1 or settings.grid_size < 1:
        raise SweepError(
            f"--track-upscale {settings.track_upscale} and --grid-size {settings.grid_size} must be positive integers"
        )

    # Data first: they are cheap to check and the commonest mistake.
    try:
        dataset = DavisDataset(settings.dataset, require_annotations=settings.require_annotations)
    except DatasetError as error:
        raise SweepError(str(error)) from None
    prompts = load_prompts(settings.prompts, known_videos=dataset.names)
    try:
        targets = prompts.eval_items(splits=settings.splits, videos=settings.videos)
    except ValueError as error:
        raise SweepError(str(error)) from None
    names = list(dict.fromkeys(target.video for target in targets))

    try:
        check_videos(dataset, names, 1, settings.require_annotations)  # frame counts once the model is known
    except DatasetError as error:
        raise SweepError(str(error)) from None
    tracker = build_sweep_tracker(settings)
    text_metrics, pick_only = load_text_metrics(settings)

    from attnkit_lmp.loading import InputError, check_writable, load_pipeline

    try:
        check_writable(settings.out)
        pipe = load_pipeline(
            settings.model, settings.dtype, settings.device or group.device, cpu_offload=False
        )
    except InputError as error:
        raise SweepError(str(error)) from None
    base_config = check_targets(pipe, targets, methods, base_config)  # now with the model's geometry
    try:
        check_videos(dataset, names, base_config.num_frames, settings.require_annotations)
    except DatasetError as error:
        raise SweepError(str(error)) from None
    fingerprint = settings.fingerprint(base_config.to_dict())
    items = plan_items(targets, methods, settings.seeds)
    identities = item_identities(items, settings, dataset, base_config)
    mine = shard(items, group.rank, group.world_size)
    store = ResultsStore(settings.out, group.rank)
    # The settings are checked and written under this rank's lock: a concurrent sweep that loses the lock
    # must fail before it touches sweep.json, or the file would describe settings of a run that never ran.
    store.lock()
    try:
        check_output_settings(settings.out, fingerprint)
        group.barrier()  # every process has checked the folder before process 0 writes its settings
        if group.rank == 0:
            write_settings(settings.out, settings, fingerprint)
        repaired = store.repair()
        done, stale = current_records(store, identities)
        pending = [item for item in mine if item.key not in done]
        summary = SweepSummary(
            rank=group.rank,
            world_size=group.world_size,
            planned=len(items),
            in_shard=len(mine),
            skipped=len(mine) - len(pending),
            ran=0,
            stale={item.key: stale[item.key] for item in mine if item.key in stale},
            repaired_bytes=repaired,
            settings=describe_settings(base_config, sources),
        )
        runner = ItemRunner(settings, pipe, base_config, dataset, tracker, text_metrics, pick_only)
        from tqdm.auto import tqdm

        with tqdm(
            pending,
            desc=f"eval (rank {group.rank})" if group.world_size > 1 else "eval",
            unit="item",
            position=group.rank,
            disable=not settings.progress,
        ) as bar:
            for item in bar:
                bar.set_postfix_str(item.key, refresh=False)
                record = runner.run(item, settings.out, group.rank)
                record["identity"] = identities[item.key]
                store.append(record)
                summary.ran += 1
                summary.generation_seconds += record["seconds"]["generation"]
                summary.item_seconds += record["seconds"]["item"]
    finally:
        store.unlock()

    group.barrier()  # every shard is on disk before the table is built
    if group.rank == 0:
        from ..report import write_report

        finished, _ = current_records(store, identities)
        summary.report = {
            name: str(path) for name, path in write_report(settings.out, items, finished, settings).items()
        }
        planned = [finished[item.key] for item in items if item.key in finished]
        summary.plan_generation_seconds = sum(record["seconds"]["generation"] for record in planned)
        summary.plan_item_seconds = sum(record["seconds"]["item"] for record in planned)
    summary.wall_seconds = time.perf_counter() - started_at
    from attnkit.record.atomic import atomic_write_bytes

    atomic_write_bytes(
        settings.out / f"summary-rank{group.rank}.json",
        (json.dumps(summary.to_dict(), indent=1) + "\n").encode("utf-8"),
    )
    return summary
