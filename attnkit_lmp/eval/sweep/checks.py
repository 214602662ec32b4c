"""The checks a sweep makes before any long work, so that every process fails alike and at once.

Frames and masks of every video used, the methods, the LMP modules not blocked, every prompt's subject
tokens against the pipeline's tokenizer, the tracker and the metric model folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...methods import Method, resolve_methods
from ..datasets import DatasetError, DavisDataset, EvalItem
from .settings import SweepError, SweepSettings, method_config

LMP_PLUGIN_NAMES = frozenset({"lmp.reference", "lmp.fbdm", "lmp.rmtm", "lmp.asm"})


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
    from ..trackers import TrackerUnavailableError, build_tracker

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
    from ..clip_metrics import (
        PICKSCORE_MODEL_NAME,
        PICKSCORE_PROCESSOR_NAME,
        ClipEmbedder,
        MetricModelNotFoundError,
    )
    from ..clip_metrics import VideoTextMetrics, download_help

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
