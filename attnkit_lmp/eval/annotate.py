"""Annotating a dataset: a vision-language model writes the prompts file of its videos, resumably.

For each video the model sees a few evenly spaced frames and answers, as one JSON object, the subject
word, a dense one-sentence prompt (Ori), a subject-substituted variant (Sub) and a background-changed
one (Back); :mod:`.annotation_answers` reads the answer. After every annotated video the whole file is
rewritten atomically, so a rerun (also after a kill) skips the videos already in it; ``overwrite`` redoes
them. The generation step is one callable, ``generate_answer(images, instruction) -> str``:
:meth:`~attnkit_lmp.eval.vision_language_model.VisionLanguageModel.answer` is the real one.
``attnkit-lmp annotate`` (:mod:`attnkit_lmp.annotate_command`) runs it from the command line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .annotation_answers import AnswerParseError, instruction_for, parse_answer
from .datasets import (
    DEFAULT_RESOLUTION,
    DatasetError,
    DavisDataset,
    PromptsFile,
    PromptsFileError,
    VideoPrompts,
    load_prompts,
)

DEFAULT_NUM_FRAMES = 4
OUTPUT_SUFFIXES = (".yaml", ".yml", ".json")


class AnnotationError(ValueError):
    """An input of the annotation (videos, output file, options) is wrong; the message says how to fix it."""


def evenly_spaced(total: int, count: int) -> list[int]:
    """``count`` frame indices spread over ``total`` frames, first and last included (all when fewer)."""
    if count >= total:
        return list(range(total))
    if count == 1:
        return [total // 2]
    return sorted({int(index) for index in np.linspace(0, total - 1, count).round()})


@dataclass
class AnnotationPlan:
    """What a run will do: the dataset, the output file, its entries kept as they are, the videos to ask."""

    dataset: DavisDataset
    out: Path
    entries: dict[str, VideoPrompts]
    """Entries already in the output file (all of them, also of videos not selected)."""
    pending: list[str]
    """Videos to annotate, in dataset order."""
    skipped: list[str]
    """Selected videos already in the output file (not redone without ``overwrite``)."""


@dataclass
class AnnotationResult:
    """The outcome of a run: videos written, skipped (already annotated) and failed (answer unusable)."""

    out: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, AnswerParseError] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the terminal."""
        parts = [f"annotated {len(self.written)} video(s)", f"skipped {len(self.skipped)} already in the file"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed ({', '.join(self.failed)}); rerun to retry them")
        return f"{'; '.join(parts)}: {self.out}"


def plan_annotation(
    dataset_root: str | Path,
    out: str | Path,
    videos: Sequence[str] | None = None,
    overwrite: bool = False,
    resolution: str = DEFAULT_RESOLUTION,
) -> AnnotationPlan:
    """Check the dataset, the selected ``videos`` and an existing output file, before any model is loaded.

    An existing output file must be valid for this dataset (it is kept, never replaced by a broken one).
    """
    out = Path(out).expanduser()
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AnnotationError(
            f"output file '{out}' has suffix '{out.suffix}'; the prompts file is .yaml, .yml or .json"
        )
    if out.is_dir():
        raise AnnotationError(f"output '{out}' is a folder; pass a file path such as {out / 'prompts.yaml'}")
    dataset = DavisDataset(dataset_root, resolution=resolution, require_annotations=False)
    selected = list(dataset.names) if not videos else list(dict.fromkeys(videos))
    unknown = [name for name in selected if name not in dataset]
    if unknown:
        raise AnnotationError(
            f"video(s) {', '.join(unknown)} are not in the dataset '{dataset.frames_dir}'; "
            f"its videos: {', '.join(dataset.names)}"
        )
    entries: dict[str, VideoPrompts] = {}
    if out.exists():
        try:
            entries = dict(load_prompts(out, known_videos=dataset.names).videos)
        except PromptsFileError as error:
            raise AnnotationError(
                f"the existing output file cannot be resumed from; fix it, or move it away to start afresh:\n{error}"
            ) from None
    order = {name: index for index, name in enumerate(dataset.names)}
    selected.sort(key=order.__getitem__)
    pending = [name for name in selected if overwrite or name not in entries]
    skipped = [name for name in selected if name not in pending]
    return AnnotationPlan(dataset=dataset, out=out, entries=entries, pending=pending, skipped=skipped)


def annotate(
    plan: AnnotationPlan,
    generate_answer: Callable[[list, str], str],
    num_frames: int = DEFAULT_NUM_FRAMES,
    progress: bool = True,
) -> AnnotationResult:
    """Ask ``generate_answer(images, instruction)`` about every pending video; write the file after each one.

    ``images`` are ``num_frames`` evenly spaced frames (PIL, RGB). A video whose answer fails
    `parse_answer` is recorded in ``failed`` and keeps its previous entry, if any.
    """
    from tqdm.auto import tqdm

    if num_frames < 1:
        raise AnnotationError(f"num_frames is {num_frames}; show the model at least 1 frame per video")
    result = AnnotationResult(out=plan.out, skipped=list(plan.skipped))
    entries = dict(plan.entries)
    with tqdm(plan.pending, desc="annotate", unit="video", disable=not progress) as bar:
        for name in bar:
            images = _sample_frames(plan.dataset, name, num_frames)
            answer = generate_answer(images, instruction_for(len(images)))
            try:
                entries[name] = parse_answer(answer, name)
            except AnswerParseError as error:
                result.failed[name] = error
                bar.set_postfix(failed=len(result.failed))
                continue
            write_prompts_file(plan.out, entries, plan.dataset.names)
            result.written.append(name)
    return result


def write_prompts_file(out: Path, entries: dict[str, VideoPrompts], dataset_names: Sequence[str]) -> Path:
    """Validate ``entries`` as a prompts file for the dataset and write it whole (temporary file + rename)."""
    from attnkit.record.atomic import atomic_write_bytes

    data = {"videos": {name: entries[name].to_dict() for name in dataset_names if name in entries}}
    PromptsFile.from_dict(data, known_videos=dataset_names, path=out)
    if out.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(out, text.encode("utf-8"))


def _sample_frames(dataset: DavisDataset, name: str, num_frames: int) -> list:
    from PIL import Image

    paths = dataset.frame_paths(name)
    images = []
    for index in evenly_spaced(len(paths), num_frames):
        try:
            with Image.open(paths[index]) as image:
                images.append(image.convert("RGB"))
        except OSError as error:
            raise DatasetError(f"cannot read frame '{paths[index]}': {error}") from error
    return images
