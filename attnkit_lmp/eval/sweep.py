"""Evaluation sweeps: every (video, split, method, seed) generated once, scored, kept across kills and reruns.

:func:`run_sweep` is what ``attnkit-lmp eval`` runs. In order:

1. **Checks before any long work** (every process does them, so all fail alike): the dataset layout,
   frames and annotations of every video used (:class:`~attnkit_lmp.eval.datasets.DatasetError`), the
   prompts file against the dataset (:class:`~attnkit_lmp.eval.datasets.PromptsFileError`), the methods,
   the metric model folders (:class:`~attnkit_lmp.eval.clip_metrics.MetricModelNotFoundError`), the
   pipeline, every prompt's subject tokens, the output folder, and that an existing output folder was
   written with the same settings (:class:`SweepSettingsMismatchError`).
2. **Items.** The plan lists the items video by video (so a video's reference tracks are computed once);
   process ``rank`` of ``world`` takes items ``rank, rank + world, ...`` of the plan. Items already in
   any results file with the same identity are skipped: an item's identity (:func:`item_identities`)
   covers its prompt, subject and reference texts, a digest of its reference video's files, the model's
   files, its method's LMPConfig and the loaded attnkit plugins with their versions, so an item whose
   inputs changed is computed again (the summary says how many and what changed). Each finished item
   writes its video (temporary file, fsynced, then rename) and then appends its record (see
   :mod:`~attnkit_lmp.eval.results`), so a record always has its video. Generation runs with attnkit's
   finiteness check: a NaN is an error naming the item and the plugin call, never a black video.
3. **Aggregate.** After a barrier, process 0 builds the table from every record of the plan
   (:mod:`~attnkit_lmp.eval.report`).

Methods (:mod:`~attnkit_lmp.methods`): ``baseline`` is the plain pipeline with the initial noise
LMP would start from (same seed, same first draw); the others are ``motion_transfer`` with config
changes. Timing: each record holds its generation seconds and its whole-item seconds; the summary
reports the harness overhead (everything but the generations) per item and over the process's wall time.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .datasets import SPLITS, DatasetError, DavisDataset, EvalItem, load_prompts
from ..methods import DEFAULT_METHODS, Method, resolve_methods
from .motion_fidelity import DEFAULT_MIN_DISPLACEMENT, MOTION_FIDELITY_VERSION, motion_fidelity
from .results import ResultsStore

SETTINGS_FILE = "sweep.json"
TRACKER_ALIASES = {
    "lk": "lucas-kanade",
    "lucas-kanade": "lucas-kanade",
    "centroid": "centroid",
    "cotracker": "cotracker",
}
PAPER_GRID_SIZE = 55
LMP_PLUGIN_NAMES = frozenset({"lmp.reference", "lmp.fbdm", "lmp.rmtm", "lmp.asm"})


class SweepError(ValueError):
    """An input of the sweep cannot work; the message says which and how to fix it."""


class SweepSettingsMismatchError(SweepError):
    """The output folder holds results computed with other settings; mixing them would corrupt the table."""


class ExtraMetrics(Protocol):
    """Metrics a sweep adds to every item beside MF and the text metrics, such as the toy world's checks
    (:class:`attnkit_lmp.toy.scores.ToyWorldMetrics`, which ``attnkit-lmp eval --toy-metrics`` passes).

    ``name`` is part of the sweep's settings: a folder scored with other extra metrics is refused.
    """

    name: str

    def reference(self, frames: np.ndarray) -> Any:
        """What :meth:`score` needs of a reference video (uint8 ``(T, H, W, 3)``, as the model saw it); once per video."""

    def score(self, frames: np.ndarray, reference: Any, subject: str) -> dict[str, float]:
        """The metrics of a generated video (uint8 ``(T, H, W, 3)``) whose target subject is ``subject``."""


@dataclass
class SweepSettings:
    """Everything a sweep needs; ``fingerprint()`` is the part that decides an item's numbers."""

    dataset: Path
    prompts: Path
    model: str
    out: Path
    methods: tuple[str, ...] = DEFAULT_METHODS
    splits: tuple[str, ...] = SPLITS
    seeds: tuple[int, ...] = (0,)
    videos: tuple[str, ...] | None = None
    """A subset of the prompts file's videos, in this order; None: all of them."""
    tracker: str = "lucas-kanade"
    grid_size: int = PAPER_GRID_SIZE
    min_displacement: float = DEFAULT_MIN_DISPLACEMENT
    """MF: pixels per frame, of the tracked (possibly enlarged) frames, below which a point stands still."""
    track_upscale: int = 1
    """Frames are enlarged this many times (nearest) before tracking: Lucas-Kanade's 21-px window needs
    more than the 32 px of a toy frame to see local motion."""
    cotracker_checkpoint: Path | None = None
    cotracker_repo: Path | None = None
    clip: Path | None = None
    pickscore: Path | None = None
    pickscore_processor: Path | None = None
    config: Path | None = None
    """An LMPConfig file (JSON/YAML) every method starts from; None: the paper's defaults."""
    steps: int | None = None
    guidance_scale: float | None = None
    extra_metrics: tuple[ExtraMetrics, ...] = ()
    """Metrics every item gets beside MF and the text metrics, e.g. the toy world's checks (``--toy-metrics``)."""
    require_annotations: bool = True
    dtype: str = "float32"
    device: str | None = None
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.dataset, self.prompts, self.out = Path(self.dataset), Path(self.prompts), Path(self.out)
        for name in (
            "cotracker_checkpoint",
            "cotracker_repo",
            "clip",
            "pickscore",
            "pickscore_processor",
            "config",
        ):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        self.methods, self.splits = tuple(self.methods), tuple(self.splits)
        self.extra_metrics = tuple(self.extra_metrics)
        self.seeds = tuple(int(seed) for seed in self.seeds)
        if self.videos is not None:
            self.videos = tuple(self.videos)

    def fingerprint(self, base_config: dict[str, Any]) -> dict[str, Any]:
        """What makes two runs' items comparable: model, sampling config, tracker, metric models."""
        return {
            "model": self.model,
            "dtype": self.dtype,
            "lmp_config": base_config,
            "tracker": self.tracker,
            "grid_size": self.grid_size,
            "min_displacement": self.min_displacement,
            "motion_fidelity_version": MOTION_FIDELITY_VERSION,
            "track_upscale": self.track_upscale,
            "cotracker_checkpoint": _text(self.cotracker_checkpoint),
            "clip": _text(self.clip),
            "pickscore": _text(self.pickscore),
            "extra_metrics": [metrics.name for metrics in self.extra_metrics],
        }


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


# --- planning ---------------------------------------------------------------------------------------


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


def check_videos(
    dataset: DavisDataset, names: Sequence[str], num_frames: int, require_annotations: bool
) -> None:
    """Every video used has gap-free frames (at least ``num_frames``) and, if required, a mask per frame.

    Reads only the folder listings, not the images, so a large dataset is checked in a moment.
    """
    for name in names:
        paths = dataset.frame_paths(name)
        if require_annotations:
            _check_annotations(dataset, name, paths)
        if len(paths) < num_frames:
            raise DatasetError(
                f"video '{name}' has {len(paths)} frames in '{paths[0].parent}', the model generates "
                f"{num_frames}; remove it from the prompts file or lower num_frames in --config"
            )


def _check_annotations(dataset: DavisDataset, name: str, paths: Sequence[Path]) -> None:
    mask_folder = dataset.annotations_dir / name if dataset.annotations_dir is not None else None
    if mask_folder is None or not mask_folder.is_dir():
        raise DatasetError(
            f"video '{name}' has no annotation folder '{mask_folder}'; add its masks "
            "(Annotations/<video>/<frame>.png) or pass --no-annotations when the tracker does not need them"
        )
    masks = {path.stem for path in mask_folder.glob("*.png")}
    orphans = sorted(masks - {path.stem for path in paths})
    if orphans:
        # A mask without its frame reveals frames lost at the end, which the numbering cannot show.
        raise DatasetError(
            f"frame '{paths[0].parent / (orphans[0] + paths[0].suffix)}' is missing: its annotation "
            f"'{mask_folder / (orphans[0] + '.png')}' exists; restore the frames"
        )
    missing = [path for path in paths if path.stem not in masks]
    if missing:
        raise DatasetError(
            f"annotation '{mask_folder / (missing[0].stem + '.png')}' is missing ({len(missing)} of "
            f"{len(paths)} frames of '{name}' have no mask); restore the masks or pass --no-annotations"
        )


def base_lmp_config(settings: SweepSettings):
    """The LMPConfig every method starts from: ``--config`` (or the paper's), ``--steps``, ``--guidance-scale``."""
    from attnkit_lmp.config import LMPConfig, LMPConfigError

    try:
        config = LMPConfig.load(settings.config) if settings.config is not None else LMPConfig()
        values = config.to_dict()
        if settings.guidance_scale is not None:
            values["guidance_scale"] = settings.guidance_scale
        if settings.steps is not None:
            scaled = ("num_inference_steps", "fbdm_steps", "rmtm_steps", "asm_steps")
            config = LMPConfig.for_steps(
                settings.steps, **{k: v for k, v in values.items() if k not in scaled}
            )
        else:
            config = LMPConfig.from_dict(values)
        return config.validate()
    except LMPConfigError as error:
        raise SweepError(str(error)) from None


def method_config(base, method: Method):
    """``base`` with the method's config changes; a change naming no LMPConfig field is an error."""
    from attnkit_lmp.config import LMPConfigError

    try:
        return method.config(base)
    except LMPConfigError as error:
        raise SweepError(f"method '{method.name}': {error}") from None


def check_output_settings(out: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse an output folder whose earlier results were computed with other settings."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SweepSettingsMismatchError(
            f"cannot read the settings of the earlier sweep in '{path}' ({error}); restore the file or choose "
            "another --out"
        ) from None
    expected = _flatten(json.loads(json.dumps(fingerprint)))  # the same JSON round trip the file went through
    recorded = _flatten(recorded)
    differing = sorted(key for key in set(recorded) | set(expected) if recorded.get(key) != expected.get(key))
    if differing:
        details = "; ".join(
            f"{key}: was {_short_json(recorded.get(key))}, now {_short_json(expected.get(key))}"
            for key in differing
        )
        raise SweepSettingsMismatchError(
            f"'{out}' holds results of a sweep with other settings ({details}). Their numbers are not "
            "comparable with this run's: choose another --out, or rerun with the earlier settings"
        )


def write_settings(out: Path, settings: SweepSettings, fingerprint: dict[str, Any]) -> None:
    from attnkit.record.atomic import atomic_write_bytes

    values = {k: _jsonable(v) for k, v in asdict(settings).items()}
    values["extra_metrics"] = [metrics.name for metrics in settings.extra_metrics]
    payload = {"fingerprint": fingerprint, "settings": values}
    atomic_write_bytes(out / SETTINGS_FILE, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


# --- what decides an item's numbers ------------------------------------------------------------------

IDENTITY_PARTS = ("texts", "reference_video", "model", "lmp_config", "plugins")
_LARGE_FILE = 1 << 20


def item_identities(items: Sequence[SweepItem], settings: SweepSettings, dataset: DavisDataset, base_config):
    """Item key -> digests of everything that decides its numbers besides the sweep-wide settings.

    ``texts``: prompt, subject, reference prompt and subject; ``reference_video``: the bytes of its frame
    (and mask) files; ``model``: the model folder's files; ``lmp_config``: the method's config;
    ``plugins``: names and versions of the attnkit plugins loaded from entry points and built in.
    """
    model = model_digest(settings.model)
    plugins = plugins_digest()
    videos: dict[str, str] = {}
    configs: dict[str, str] = {}
    identities = {}
    for item in items:
        target = item.target
        if target.video not in videos:
            videos[target.video] = video_digest(dataset, target.video)
        if item.method.name not in configs:
            configs[item.method.name] = _digest(method_config(base_config, item.method).to_dict())
        identities[item.key] = {
            "texts": _digest([target.prompt, target.subject, target.reference_prompt, target.reference_subject]),
            "reference_video": videos[target.video],
            "model": model,
            "lmp_config": configs[item.method.name],
            "plugins": plugins,
        }
    return identities


def changed_parts(recorded: Any, expected: dict[str, str]) -> list[str]:
    """The identity parts in which a record differs from the item now (all, for a record without one)."""
    if not isinstance(recorded, dict):
        return ["no identity recorded"]
    return [part for part in IDENTITY_PARTS if recorded.get(part) != expected.get(part)]


def current_records(store: ResultsStore, identities: dict[str, dict[str, str]]):
    """``(records, stale)``: by key, the first record whose identity is the item's now; and, for keys with
    only other records, what changed."""
    records: dict[str, dict[str, Any]] = {}
    stale: dict[str, list[str]] = {}
    for record in store.records():
        key = record["key"]
        if key in records or key not in identities:
            continue
        if record.get("identity") == identities[key]:
            records[key] = record
            stale.pop(key, None)
        else:
            stale.setdefault(key, changed_parts(record.get("identity"), identities[key]))
    return records, stale


def video_digest(dataset: DavisDataset, name: str) -> str:
    """A digest of a video's frame files and, if any, its annotation files (names and bytes)."""
    paths = list(dataset.frame_paths(name))
    if dataset.annotations_dir is not None and (dataset.annotations_dir / name).is_dir():
        paths += sorted((dataset.annotations_dir / name).glob("*.png"))
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.parent.name}/{path.name}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def model_digest(model: str) -> str:
    """A digest of the model's name and its folder's files: small files whole, large ones (weights) by size
    and their first and last megabyte, which differ between checkpoints without reading gigabytes."""
    digest = hashlib.sha256(model.encode())
    folder = Path(model)
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            size = path.stat().st_size
            digest.update(f"{path.relative_to(folder)}\0{size}\0".encode())
            with open(path, "rb") as file:
                if size <= 2 * _LARGE_FILE:
                    digest.update(file.read())
                else:
                    digest.update(file.read(_LARGE_FILE))
                    file.seek(-_LARGE_FILE, os.SEEK_END)
                    digest.update(file.read())
    return digest.hexdigest()[:16]


def plugins_digest() -> str:
    """Names and versions of the plugins every session loads (built-ins and entry points)."""
    from attnkit.plugins import describe_plugins, make_plugin_manager

    import attnkit_lmp

    loaded = sorted((info.name, info.version) for info in describe_plugins(make_plugin_manager()))
    return _digest({"plugins": loaded, "attnkit_lmp": getattr(attnkit_lmp, "__version__", None)})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


# --- one process's work -----------------------------------------------------------------------------


class ItemRunner:
    """Generates and scores items with models loaded once; caches each video's reference and its tracks."""

    def __init__(
        self,
        settings: SweepSettings,
        pipe,
        base_config,
        dataset: DavisDataset,
        tracker,
        text_metrics,
        pick_only,
    ):
        self.settings = settings
        self.pipe = pipe
        self.base_config = base_config
        self.dataset = dataset
        self.tracker = tracker
        self.text_metrics = text_metrics
        self.pick_only = pick_only
        self._reference_video: str | None = None
        self._reference: dict[str, Any] = {}
        self._configs: dict[str, Any] = {}

    def config_for(self, method: Method):
        if method.name not in self._configs:
            self._configs[method.name] = method_config(self.base_config, method)
        return self._configs[method.name]

    def reference(self, video: str, geometry) -> dict[str, Any]:
        """The reference as the model sees it (sampled, resized), its tracks and what the extra metrics need of
        it; cached per video."""
        if self._reference_video == video:
            return self._reference
        import torch

        from attnkit_lmp.video_io import read_video, to_uint8

        loaded = self.dataset.load(video)
        model_view = read_video(
            loaded.frames,
            geometry.num_frames,
            geometry.height,
            geometry.width,
            frame_sampling=geometry.frame_sampling,
        )
        frames = to_uint8(model_view)
        masks = None
        if loaded.masks is not None:
            # The masks go through the same sampling and resizing as the frames, then back to booleans.
            as_video = torch.from_numpy(loaded.masks.astype(np.float32))[..., None]
            masks = (
                read_video(
                    as_video,
                    geometry.num_frames,
                    geometry.height,
                    geometry.width,
                    frame_sampling=geometry.frame_sampling,
                )[:, 0].numpy()
                > 0.5
            )
        if self.settings.tracker == "centroid" and masks is not None:
            tracks = self.tracker.track_masks(self._enlarged(masks))
        else:
            tracks = self.tracker.track(self._enlarged(frames), self.settings.grid_size)
        reference = {
            "model_view": model_view,
            "frames": frames,
            "tracks": tracks,
            "extra": [metrics.reference(frames) for metrics in self.settings.extra_metrics],
        }
        self._reference_video, self._reference = video, reference
        return reference

    def _enlarged(self, video: np.ndarray) -> np.ndarray:
        factor = self.settings.track_upscale
        if factor == 1:
            return video
        return np.ascontiguousarray(video.repeat(factor, axis=1).repeat(factor, axis=2))

    def generate(self, item: SweepItem, reference_view):
        """Frames ``(F, 3, H, W)`` in [0, 1] of the item's method; the seed fixes the initial noise."""
        import torch

        from attnkit_lmp.transfer import motion_transfer

        target = item.target
        config = self.config_for(item.method)
        generator = torch.Generator(device="cpu").manual_seed(item.seed)
        if item.method.kind == "lmp":
            frames = motion_transfer(
                self.pipe,
                reference=reference_view,
                reference_prompt=target.reference_prompt,
                reference_subject=target.reference_subject,
                prompt=target.prompt,
                subject=target.subject,
                config=config,
                generator=generator,
                progress=False,
                check_finite=True,
            )
        else:
            frames = plain_generation(self.pipe, target, config, generator)
        if not torch.isfinite(frames).all():
            raise FloatingPointError(
                "the generated video holds NaN or inf (the unmodified pipeline made it: check "
                "--guidance-scale and the config)"
            )
        return frames

    def score(self, item: SweepItem, frames: np.ndarray, reference: dict[str, Any]) -> dict[str, Any]:
        """MF always; Align/Cons./Pick. when their models were given; the extra metrics of the settings."""
        generated = self.tracker.track(self._enlarged(frames), self.settings.grid_size)
        use_visibility = self.settings.tracker != "cotracker"  # DMT scores CoTracker tracks through occlusion
        fidelity = motion_fidelity(
            generated.tracks,
            reference["tracks"].tracks,
            generated_visible=generated.visible if use_visibility else None,
            reference_visible=reference["tracks"].visible if use_visibility else None,
            min_displacement=self.settings.min_displacement,
        )
        metrics: dict[str, float] = {"motion_fidelity": fidelity.score}
        if self.text_metrics is not None:
            metrics.update(self.text_metrics.evaluate(frames, item.target.prompt))
        elif self.pick_only is not None:
            from .clip_metrics import pick_scores

            scores = pick_scores(
                self.pick_only.embed_frames(frames),
                self.pick_only.embed_text(item.target.prompt),
                self.pick_only.logit_scale,
            )
            metrics["pick"] = float(scores.mean())
        for extra, reference_state in zip(self.settings.extra_metrics, reference["extra"]):
            metrics.update(extra.score(frames, reference_state, item.target.subject))
        # NaN (e.g. no object found) is stored as null: JSON lines stay standard JSON.
        metrics = {
            name: None if value is None or np.isnan(value) else float(value)
            for name, value in metrics.items()
        }
        return {"metrics": metrics, "motion_fidelity": fidelity.to_dict()}

    def run(self, item: SweepItem, out: Path, rank: int) -> dict[str, Any]:
        """Generate, score and save one item; returns its record (not yet appended)."""
        from attnkit_lmp.video_io import to_uint8

        started = time.perf_counter()
        geometry = self.config_for(item.method)
        reference = self.reference(item.target.video, geometry)
        generation_started = time.perf_counter()
        try:
            frames = self.generate(item, reference["model_view"])
        except FloatingPointError as error:  # attnkit's NonFiniteError and motion_transfer's are ones too
            raise SweepError(
                f"item '{item.key}': {error}. Nothing was written for it; fix the settings and rerun"
            ) from error
        generation_seconds = time.perf_counter() - generation_started
        generated = to_uint8(frames)
        scores = self.score(item, generated, reference)
        write_mp4(out / item.video_path, generated, fps=geometry.fps)
        target = item.target
        return {
            "key": item.key,
            "video": target.video,
            "split": target.split,
            "method": item.method.name,
            "seed": item.seed,
            "prompt": target.prompt,
            "subject": target.subject,
            "reference_prompt": target.reference_prompt,
            "reference_subject": target.reference_subject,
            "method_kind": item.method.kind,
            "method_config_changes": item.method.config_changes,
            **scores,
            "video_path": item.video_path,
            "seconds": {"generation": generation_seconds, "item": time.perf_counter() - started},
            "rank": rank,
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Write uint8 (T, H, W, 3) frames as H.264 mp4, atomically (temporary file in the folder, then rename).

    Frames under 128 pixels are enlarged by whole pixels so they can be seen. PyAV directly: imageio's
    writer runs two full garbage collections per file, which cost more than a toy generation.
    """
    import av

    from attnkit.record.atomic import atomic_file

    upscale = max(1, 128 // max(frames.shape[1:3]))
    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # yuv420p needs even sides
    path.parent.mkdir(parents=True, exist_ok=True)
    # The results line that points at this video is written next: atomic_file has it on disk first.
    with atomic_file(path) as temporary:
        with av.open(str(temporary), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"crf": "12"}
            for frame in frames:
                container.mux(
                    stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
                )
            container.mux(stream.encode())
    return path


def plain_generation(pipe, target: EvalItem, config, generator):
    """The baseline: the unmodified pipeline from the same first noise draw ``motion_transfer`` makes."""
    from attnkit_lmp.transfer import baseline_generation

    return baseline_generation(pipe, target.prompt, config, generator)


# --- the whole sweep --------------------------------------------------------------------------------


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
    settings.tracker = _tracker_name(settings.tracker)
    methods = resolve_methods_or_fail(settings.methods)
    base_config = base_lmp_config(settings)
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

    from attnkit_lmp.transfer_command import InputError, check_writable, load_pipeline

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
        from .report import write_report

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


def resolve_methods_or_fail(names: Sequence[str]) -> list[Method]:
    try:
        return resolve_methods(names)
    except ValueError as error:
        raise SweepError(str(error)) from None


def check_targets(pipe, targets: Sequence[EvalItem], methods: Sequence[Method], base_config):
    """Every target's and reference's subject is found in its prompt's tokens; returns ``base_config`` resolved.

    The resolved config has the model's geometry (size, frames, text length) filled in. Runs
    ``motion_transfer``'s own checks without a reference video, so a bad prompt fails now, not after hours
    of generation.
    """
    from attnkit_lmp.transfer import MotionTransferError, check_pipeline, prepare_transfer

    if check_pipeline(pipe) != "t2v":
        raise SweepError(
            f"{type(pipe).__name__} is image-to-video; the sweep evaluates text-to-video pipelines (the prompts "
            "file holds no first frame for the Sub and Back targets). Pass a text-to-video checkpoint"
        )
    import attnkit

    from attnkit_lmp.config import LMPConfigError

    from attnkit.plugins import BLOCK_ENV, blocked_plugin_names

    blocked = sorted(blocked_plugin_names() & LMP_PLUGIN_NAMES)
    if blocked and any(method.kind == "lmp" for method in methods):
        raise SweepError(
            f"{BLOCK_ENV} blocks LMP's own modules {blocked}, so every LMP item would fail; unset them, or "
            "use the methods that switch modules off (e.g. lmp-no-asm)"
        )
    with attnkit.attach(pipe) as session:
        depth = session.num_attention_modules
    for method in methods:
        config = method_config(base_config, method)  # each method's changes make a valid config
        if method.kind != "lmp":
            continue  # the baseline runs no module, so its layer lists are unused
        try:
            config.check_layers(depth)  # else its first item would fail after the others' generations
        except LMPConfigError as error:
            raise SweepError(f"method '{method.name}': {error}") from None
    resolved = None
    for target in targets:
        try:
            plan = prepare_transfer(
                pipe,
                None,
                target.reference_prompt,
                target.reference_subject,
                target.prompt,
                target.subject,
                None,
                base_config,
            )
        except MotionTransferError as error:
            raise SweepError(f"item '{target.key}': {error}") from None
        resolved = resolved or plan.config
    return resolved


def build_sweep_tracker(settings: SweepSettings):
    from .trackers import TrackerUnavailableError, build_tracker

    if settings.tracker == "cotracker":
        if settings.cotracker_checkpoint is None:
            raise SweepError(
                "--tracker cotracker needs --cotracker-checkpoint PATH (and --cotracker-repo PATH)"
            )
        try:
            return build_tracker(
                "cotracker", checkpoint=settings.cotracker_checkpoint, repo=settings.cotracker_repo
            )
        except TrackerUnavailableError as error:
            raise SweepError(str(error)) from None
    if settings.tracker == "centroid" and not settings.require_annotations:
        raise SweepError(
            "--tracker centroid follows the reference's annotated masks; drop --no-annotations, or use --tracker lk"
        )
    return build_tracker(settings.tracker)


def load_text_metrics(settings: SweepSettings):
    """(VideoTextMetrics or None, PickScore-only embedder or None), loaded once; missing folders fail now."""
    from .clip_metrics import (
        PICKSCORE_MODEL_NAME,
        PICKSCORE_PROCESSOR_NAME,
        ClipEmbedder,
        MetricModelNotFoundError,
    )
    from .clip_metrics import VideoTextMetrics, download_help

    if settings.pickscore is not None and settings.pickscore_processor is None:
        raise SweepError(
            "--pickscore needs --pickscore-processor too: PickScore_v1 has no processor of its own.\n"
            + download_help("Pick.", PICKSCORE_MODEL_NAME, PICKSCORE_PROCESSOR_NAME)
        )
    try:
        if settings.clip is not None:
            metrics = VideoTextMetrics.from_paths(
                settings.clip, settings.pickscore, settings.pickscore_processor
            )
            return metrics, None
        if settings.pickscore is not None:
            pick_only = ClipEmbedder(
                settings.pickscore,
                settings.pickscore_processor,
                role="Pick.",
                download_hint=download_help("Pick.", PICKSCORE_MODEL_NAME, PICKSCORE_PROCESSOR_NAME),
            )
            return None, pick_only
    except MetricModelNotFoundError as error:
        raise SweepError(
            f"{error}\nThe sweep takes them as --clip DIR (Align, Cons.) and --pickscore DIR --pickscore-processor "
            "DIR (Pick.); without them those metrics are reported as not computed, MF needs no model"
        ) from None
    return None, None


def _tracker_name(name: str) -> str:
    try:
        return TRACKER_ALIASES[name]
    except KeyError:
        raise SweepError(f"unknown tracker '{name}'; expected one of lk, centroid, cotracker") from None


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    return value


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys, so a mismatch names the field (lmp_config.asm_steps)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _short_json(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
