"""Evaluation data: videos in the DAVIS folder layout, and the prompts file of the paper's three splits.

Folder layout (DAVIS 2016/2017; the toy world writes the same without the resolution level)::

    ROOT/JPEGImages/480p/<video>/00000.jpg, 00001.jpg, ...     or  ROOT/JPEGImages/<video>/00000.png ...
    ROOT/Annotations/480p/<video>/00000.png, 00001.png, ...    or  ROOT/Annotations/<video>/00000.png ...

Annotations are one PNG per frame, named like the frame; any non-zero pixel is foreground (DAVIS
2017 palette indices and DAVIS 2016 0/255 masks alike).

Prompts file (YAML, or JSON with the same structure), one entry per video::

    videos:
      blackswan:
        subject: swan                       # the subject word(s), as they occur in `prompt`
        prompt: A black swan glides ...     # Ori: the video's own dense prompt
        sub:                                # Sub: subject changed
          subject: duck
          prompt: A white duck glides ...
        back:                               # Back: background changed, same subject
          prompt: A black swan glides across a neon-lit canal ...

`load_prompts` checks the whole file and reports every problem at once. Each (video, split) pair is
an `EvalItem`: the target prompt and subject to generate, and the reference prompt and subject
(always the Ori ones, which describe the reference video).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

SPLITS: tuple[str, ...] = ("ori", "sub", "back")
FRAME_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
DEFAULT_RESOLUTION = "480p"


class DatasetError(ValueError):
    """The dataset folder does not have the expected layout or content; the message names the path."""


class PromptsFileError(ValueError):
    """The prompts file has problems; the message lists all of them."""

    def __init__(self, path: str | Path, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"prompts file '{self.path}' has {len(self.problems)} problem(s):\n{listed}\n"
            "Expected per video: subject, prompt, sub {subject, prompt}, back {prompt} "
            "(see docs/evaluation.md)."
        )


@dataclass(frozen=True)
class Video:
    """One loaded video: frames, optional foreground masks, and where the frames came from."""

    name: str
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    masks: np.ndarray | None
    """(T, H, W) bool foreground, or None when the dataset has no annotations for this video."""
    frame_paths: tuple[Path, ...]


class DavisDataset:
    """Videos under ROOT in the DAVIS layout, with or without the resolution level (see module docstring).

    ``require_annotations``: every frame must have its mask (the default, as LMP's evaluation and the
    centroid tracker need them); when False, a video whose masks are incomplete (DAVIS test-dev has
    the first frame's only) or absent loads with masks None.
    """

    def __init__(
        self, root: str | Path, resolution: str = DEFAULT_RESOLUTION, require_annotations: bool = True
    ) -> None:
        self.root = Path(root).expanduser()
        self.require_annotations = require_annotations
        self.frames_dir = _resolution_dir(self.root / "JPEGImages", resolution, what="frames")
        annotations_root = self.root / "Annotations"
        if annotations_root.is_dir():
            self.annotations_dir: Path | None = _resolution_dir(
                annotations_root, resolution, what="annotations"
            )
        elif require_annotations:
            raise DatasetError(
                f"no annotations folder '{annotations_root}'; expected Annotations/{resolution}/<video>/"
                "<frame>.png next to JPEGImages. Add the masks, or pass require_annotations=False to load "
                "frames only."
            )
        else:
            self.annotations_dir = None
        self.names: list[str] = sorted(path.name for path in self.frames_dir.iterdir() if path.is_dir())
        if not self.names:
            raise DatasetError(f"no video folders in '{self.frames_dir}'; expected <video>/00000.jpg ...")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[Video]:
        for name in self.names:
            yield self.load(name)

    def frame_paths(self, name: str) -> list[Path]:
        """The frame files of video ``name`` in order, checked for gaps in their numbering."""
        folder = self.frames_dir / name
        if not folder.is_dir():
            raise DatasetError(
                f"no video '{name}' in '{self.frames_dir}' (no folder '{folder}'); known videos: "
                f"{_short_list(self.names)}"
            )
        paths = sorted(
            (path for path in folder.iterdir() if path.suffix.lower() in FRAME_SUFFIXES), key=_frame_order
        )
        if not paths:
            raise DatasetError(f"video folder '{folder}' has no frames ({', '.join(FRAME_SUFFIXES)} files)")
        _check_numbering(paths)
        return paths

    def load(self, name: str, num_frames: int | None = None) -> Video:
        """Frames (and masks) of video ``name``; ``num_frames`` keeps the first that many."""
        paths = self.frame_paths(name)
        mask_folder = self.annotations_dir / name if self.annotations_dir is not None else None
        if mask_folder is not None and mask_folder.is_dir():
            _check_frames_of_annotations(paths, mask_folder)
        if num_frames is not None:
            if num_frames < 1 or num_frames > len(paths):
                raise DatasetError(
                    f"video '{name}' has {len(paths)} frames in '{self.frames_dir / name}', cannot take "
                    f"the first {num_frames}; ask for 1..{len(paths)} frames"
                )
            paths = paths[:num_frames]
        first_frame = _read_frame(paths[0], expected_size=None)
        size = first_frame.shape[:2]
        frames = np.stack([first_frame] + [_read_frame(path, size) for path in paths[1:]])
        mask_paths = [mask_folder / f"{path.stem}.png" for path in paths] if mask_folder is not None else []
        masks = None
        if self.require_annotations or (mask_paths and all(path.is_file() for path in mask_paths)):
            masks = np.stack([_read_mask(path, size) for path in mask_paths])
        return Video(name=name, frames=frames, masks=masks, frame_paths=tuple(paths))


def _resolution_dir(folder: Path, resolution: str, what: str) -> Path:
    if not folder.is_dir():
        raise DatasetError(
            f"no {what} folder '{folder}'; expected {folder.name}/{resolution}/<video>/... (DAVIS) "
            f"or {folder.name}/<video>/... (toy world) under the dataset root"
        )
    with_resolution = folder / resolution
    if with_resolution.is_dir():
        return with_resolution
    subfolders = [path for path in folder.iterdir() if path.is_dir()]
    holds_videos = any(
        file.suffix.lower() in FRAME_SUFFIXES
        for sub in subfolders
        for file in sub.iterdir()
        if file.is_file()
    )
    if not holds_videos and subfolders:
        raise DatasetError(
            f"no '{with_resolution}' folder, and the folders in '{folder}' "
            f"({_short_list([path.name for path in subfolders])}) hold no frames; "
            "pass resolution= one of them"
        )
    return folder


def _frame_order(path: Path) -> tuple[int, str]:
    # Numeric stems by value, so that unpadded names (2.jpg, 10.jpg) keep their order.
    return (int(path.stem), path.name) if path.stem.isdigit() else (-1, path.name)


def _check_frames_of_annotations(frame_paths: list[Path], mask_folder: Path) -> None:
    # A mask without its frame reveals frames missing at the end, which numbering alone cannot.
    frame_stems = {path.stem for path in frame_paths}
    orphans = sorted(
        (path for path in mask_folder.glob("*.png") if path.stem not in frame_stems), key=_frame_order
    )
    if orphans:
        missing = frame_paths[0].with_name(f"{orphans[0].stem}{frame_paths[0].suffix}")
        raise DatasetError(
            f"frame '{missing}' is missing: its annotation '{orphans[0]}' exists "
            f"({len(orphans)} annotation(s) in '{mask_folder}' have no frame); restore the frames"
        )


def _check_numbering(paths: list[Path]) -> None:
    if not all(path.stem.isdigit() for path in paths):
        return
    numbers = [int(path.stem) for path in paths]
    for previous, path, number in zip(paths, paths[1:], numbers[1:]):
        expected = int(previous.stem) + 1
        if number != expected:
            missing = previous.with_name(f"{expected:0{len(previous.stem)}d}{previous.suffix}")
            raise DatasetError(
                f"frame '{missing}' is missing: frames of '{previous.parent.name}' jump from "
                f"{previous.name} to {path.name}; restore the frame or renumber the sequence"
            )


def _read_frame(path: Path, expected_size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise DatasetError(f"cannot read frame '{path}': {error}") from error
    if expected_size is not None and frame.shape[:2] != expected_size:
        raise DatasetError(
            f"frame '{path}' is {frame.shape[1]}x{frame.shape[0]} (WxH), the video's first frame is "
            f"{expected_size[1]}x{expected_size[0]}; all frames of a video must have one size"
        )
    return frame


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DatasetError(
            f"annotation '{path}' is missing; every frame needs a mask PNG of the same name in "
            f"'{path.parent}' (or load with require_annotations=False if this dataset has no masks)"
        )
    try:
        with Image.open(path) as image:
            mask = np.asarray(image)
    except OSError as error:
        raise DatasetError(f"cannot read annotation '{path}': {error}") from error
    if mask.shape[:2] != size:
        raise DatasetError(
            f"annotation '{path}' is {mask.shape[1]}x{mask.shape[0]} (WxH), its frame is {size[1]}x{size[0]}"
        )
    return mask.reshape(*size, -1).any(axis=-1)


def _short_list(names: Sequence[str], limit: int = 10) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"


@dataclass(frozen=True)
class VideoPrompts:
    """The prompts of one video for the three splits."""

    video: str
    subject: str
    prompt: str
    sub_subject: str
    sub_prompt: str
    back_prompt: str

    def to_dict(self) -> dict:
        """The entry as it appears under ``videos.<video>`` in the prompts file."""
        return {
            "subject": self.subject,
            "prompt": self.prompt,
            "sub": {"subject": self.sub_subject, "prompt": self.sub_prompt},
            "back": {"prompt": self.back_prompt},
        }


@dataclass(frozen=True)
class EvalItem:
    """One (video, split) to generate and score: target prompt/subject and the reference's."""

    video: str
    split: str
    prompt: str
    subject: str
    reference_prompt: str
    reference_subject: str

    @property
    def key(self) -> str:
        """``<video>/<split>``: a stable name for the item, e.g. for results and resuming."""
        return f"{self.video}/{self.split}"


class PromptsFile:
    """Validated prompts of a dataset's videos; build with `load_prompts` or `PromptsFile.from_dict`."""

    def __init__(self, videos: dict[str, VideoPrompts], path: Path | None = None) -> None:
        self.videos = videos
        self.path = path

    @classmethod
    def from_dict(
        cls, data: object, known_videos: Iterable[str] | None = None, path: str | Path = "<dict>"
    ) -> PromptsFile:
        """Validate ``data`` (the parsed file) and build it; raises PromptsFileError listing every problem."""
        problems = validate_prompts(data, known_videos)
        if problems:
            raise PromptsFileError(path, problems)
        videos = {
            name: VideoPrompts(
                video=name,
                subject=entry["subject"],
                prompt=entry["prompt"],
                sub_subject=entry["sub"]["subject"],
                sub_prompt=entry["sub"]["prompt"],
                back_prompt=entry["back"]["prompt"],
            )
            for name, entry in data["videos"].items()
        }
        return cls(videos, Path(path) if path != "<dict>" else None)

    def to_dict(self) -> dict:
        """The file's content, ready for yaml.safe_dump or json.dump."""
        return {"videos": {name: prompts.to_dict() for name, prompts in self.videos.items()}}

    def eval_items(
        self, splits: Sequence[str] = SPLITS, videos: Sequence[str] | None = None
    ) -> list[EvalItem]:
        """Every (video, split) item, video by video in file order, splits in the order given."""
        unknown_splits = [split for split in splits if split not in SPLITS]
        if unknown_splits:
            raise ValueError(f"unknown split(s) {unknown_splits}; expected some of {list(SPLITS)}")
        names = list(self.videos) if videos is None else list(videos)
        unknown_videos = [name for name in names if name not in self.videos]
        if unknown_videos:
            raise ValueError(
                f"video(s) {unknown_videos} have no prompts in {self.path or 'the prompts file'}; "
                f"prompted videos: {_short_list(list(self.videos))}"
            )
        items = []
        for name in names:
            prompts = self.videos[name]
            targets = {
                "ori": (prompts.prompt, prompts.subject),
                "sub": (prompts.sub_prompt, prompts.sub_subject),
                "back": (prompts.back_prompt, prompts.subject),
            }
            for split in splits:
                prompt, subject = targets[split]
                items.append(EvalItem(name, split, prompt, subject, prompts.prompt, prompts.subject))
        return items


def load_prompts(path: str | Path, known_videos: Iterable[str] | None = None) -> PromptsFile:
    """Read and validate a prompts file (.yaml/.yml or .json); ``known_videos`` are the dataset's names."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PromptsFileError(path, [f"file not found: '{path}'"])
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise PromptsFileError(path, [f"unknown file type '{path.suffix}': expected .yaml, .yml or .json"])
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise PromptsFileError(
            path, [f"cannot parse as {'JSON' if suffix == '.json' else 'YAML'}: {error}"]
        ) from error
    return PromptsFile.from_dict(data, known_videos, path)


_ENTRY_FIELDS = {"subject", "prompt", "sub", "back"}
_SPLIT_FIELDS = {"sub": {"subject", "prompt"}, "back": {"prompt"}}


def validate_prompts(data: object, known_videos: Iterable[str] | None = None) -> list[str]:
    """Every problem of a parsed prompts file, as 'location: what is wrong' lines; empty when valid."""
    if not isinstance(data, dict) or "videos" not in data:
        return ["the top level must be a mapping with a 'videos' key holding one entry per video"]
    problems = [f"{key}: unknown top-level key (expected only 'videos')" for key in data if key != "videos"]
    videos = data["videos"]
    if not isinstance(videos, dict) or not videos:
        return problems + ["videos: must be a non-empty mapping of video name -> prompts"]
    known = None if known_videos is None else set(known_videos)
    for name, entry in videos.items():
        where = f"videos.{name}"
        if known is not None and name not in known:
            problems.append(
                f"{where}: unknown video, not in the dataset (known: {_short_list(sorted(known))})"
            )
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping with subject, prompt, sub, back")
            continue
        problems += [
            f"{where}.{key}: unknown field (expected {', '.join(sorted(_ENTRY_FIELDS))})"
            for key in entry
            if key not in _ENTRY_FIELDS
        ]
        subject = _text_field(entry, "subject", where, problems)
        prompt = _text_field(entry, "prompt", where, problems)
        _check_subject_in(subject, prompt, f"{where}.prompt", problems)
        for split, fields in _SPLIT_FIELDS.items():
            if split not in entry:
                problems.append(
                    f"{where}.{split}: missing (expected a mapping with {', '.join(sorted(fields))})"
                )
                continue
            split_entry = entry[split]
            if not isinstance(split_entry, dict):
                problems.append(f"{where}.{split}: must be a mapping with {', '.join(sorted(fields))}")
                continue
            problems += [
                f"{where}.{split}.{key}: unknown field (expected {', '.join(sorted(fields))})"
                for key in split_entry
                if key not in fields
            ]
            split_prompt = _text_field(split_entry, "prompt", f"{where}.{split}", problems)
            if split == "sub":
                sub_subject = _text_field(split_entry, "subject", f"{where}.sub", problems)
                _check_subject_in(sub_subject, split_prompt, f"{where}.sub.prompt", problems)
                if sub_subject is not None and subject is not None and sub_subject.lower() == subject.lower():
                    problems.append(
                        f"{where}.sub.subject: '{sub_subject}' equals the Ori subject; "
                        "the Sub split changes the subject"
                    )
            else:
                # Back keeps the subject: its prompt must still name it.
                _check_subject_in(subject, split_prompt, f"{where}.back.prompt", problems)
    return problems


def _text_field(entry: dict, key: str, where: str, problems: list[str]) -> str | None:
    if key not in entry:
        problems.append(f"{where}.{key}: missing")
        return None
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{key}: must be a non-empty string, got {value!r}")
        return None
    return value


def subject_occurs_in(subject: str, prompt: str) -> bool:
    """True when ``subject`` occurs in ``prompt`` as whole word(s), ignoring case ('dog' is not in 'dogs')."""
    return re.search(rf"(?<!\w){re.escape(subject.strip())}(?!\w)", prompt, flags=re.IGNORECASE) is not None


def _check_subject_in(subject: str | None, prompt: str | None, where: str, problems: list[str]) -> None:
    if subject is not None and prompt is not None and not subject_occurs_in(subject, prompt):
        problems.append(
            f"{where}: subject '{subject}' does not occur as a word in {prompt!r}; "
            "the subject word must appear "
            "verbatim so its tokens can be found"
        )
