"""The ``attnkit-lmp annotate`` command: a local vision-language model writes the prompts file of a dataset.

    attnkit-lmp annotate --dataset DAVIS --model /models/Qwen2.5-VL-7B-Instruct --out prompts.yaml

For each video the model sees a few evenly spaced frames and answers, as one JSON object, the subject
word, a dense one-sentence prompt (Ori), a subject-substituted variant (Sub) and a background-changed
one (Back). The answer is parsed leniently (code fences, prose around the object, trailing commas),
then checked with the prompts-file validator of `datasets`; an answer that fails is reported with its
text and left out, never written half-formed. After every annotated video the whole file is rewritten
atomically, so a rerun (also after a kill) skips the videos already in it; ``--overwrite`` redoes them.

The model is any transformers image-text-to-text checkpoint with a chat template (Qwen2-VL,
Qwen2.5-VL, LLaVA, Idefics3/SmolVLM, ...), loaded by local path only. The generation step is one
callable, ``generate_answer(images, instruction) -> str``: `VisionLanguageModel.answer` is the real one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..cli import register_command
from .datasets import (
    DEFAULT_RESOLUTION,
    DatasetError,
    DavisDataset,
    PromptsFile,
    PromptsFileError,
    VideoPrompts,
    load_prompts,
    validate_prompts,
)

RECOMMENDED_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_NUM_FRAMES = 4
DEFAULT_MAX_NEW_TOKENS = 384
DTYPES = {
    "auto": "auto",
    "float32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
OUTPUT_SUFFIXES = (".yaml", ".yml", ".json")
ANSWER_FIELDS: tuple[str, ...] = ("subject", "prompt", "sub_subject", "sub_prompt", "back_prompt")

INSTRUCTION = """The {count} images are frames of one video, in time order.
Write prompts for a text-to-video model that should re-create the motion of this video.
Answer with one JSON object and nothing else:
{{"subject": "...", "prompt": "...", "sub_subject": "...", "sub_prompt": "...", "back_prompt": "..."}}
- subject: the noun naming the main moving subject (one or two words, e.g. "swan"), written exactly as in prompt.
- prompt: one dense sentence describing the subject, how it moves, and the background.
- sub_subject: a different subject that could make the same motion (e.g. "duck").
- sub_prompt: prompt with subject replaced by sub_subject and everything else unchanged.
- back_prompt: prompt with the same subject and motion in a clearly different background."""

# Other names models give the fields; keys are compared lower-cased, with spaces and hyphens as "_".
_FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "subject": ("subject", "subject_word", "subject_noun"),
    "prompt": ("prompt", "dense_prompt", "ori_prompt", "original_prompt"),
    "sub_subject": ("sub_subject", "substitute_subject", "substituted_subject", "new_subject"),
    "sub_prompt": ("sub_prompt", "substitute_prompt", "substituted_prompt"),
    "back_prompt": ("back_prompt", "background_prompt", "new_background_prompt"),
}
_NESTED_FIELDS = {"sub": {"subject": "sub_subject", "prompt": "sub_prompt"}, "back": {"prompt": "back_prompt"}}
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+", flags=re.IGNORECASE)
_FENCED_BLOCK = re.compile(r"```[\w-]*[ \t]*\n?(.*?)```", flags=re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_EXCERPT_CHARS = 240


class AnnotationError(ValueError):
    """An input of the annotation (videos, output file, options) is wrong; the message says how to fix it."""


class AnnotationModelNotFoundError(FileNotFoundError):
    """The vision-language model is not on local disk; the message names what to download and how to pass it."""


class AnnotationModelError(ValueError):
    """The folder holds a model that cannot annotate (not image-text-to-text, no chat template)."""


class AnswerParseError(ValueError):
    """The model's answer for one video is not a usable prompts entry; names the video and quotes the answer."""

    def __init__(self, video: str, answer: str, problems: Sequence[str]) -> None:
        self.video = video
        self.answer = answer
        self.problems = list(problems)
        super().__init__(
            f"video '{video}': the model's answer is not usable: {'; '.join(self.problems)}\n"
            f"  answer: {answer_excerpt(answer)}"
        )


def model_help(path: str | Path) -> str:
    """What to download, where there is internet, and how to pass it to ``attnkit-lmp annotate``."""
    folder = f"/models/{RECOMMENDED_MODEL.split('/')[-1]}"
    return (
        f"annotate needs an instruction-tuned image-text-to-text model on local disk, e.g. {RECOMMENDED_MODEL}\n"
        "(any Qwen2-VL / LLaVA-style transformers checkpoint with a chat template works). "
        "Where there is internet, run\n"
        f"  huggingface-cli download {RECOMMENDED_MODEL} --local-dir {folder}\n"
        f"then copy the folder here and pass it instead of '{path}':\n"
        f"  attnkit-lmp annotate --dataset DIR --model {folder} --out prompts.yaml"
    )


def check_model_folder(path: str | Path) -> Path:
    """``path`` as a Path if it is a folder with a transformers config; raises AnnotationModelNotFoundError."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise AnnotationModelNotFoundError(f"no vision-language model folder at '{folder}'.\n{model_help(folder)}")
    if not (folder / "config.json").is_file():
        raise AnnotationModelNotFoundError(
            f"'{folder}' is not a transformers model folder (it has no config.json).\n{model_help(folder)}"
        )
    return folder


class VisionLanguageModel:
    """A local image-text-to-text model and its processor, answering one instruction about a few images."""

    def __init__(self, model, processor, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        device: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> VisionLanguageModel:
        """Load model and processor from the local folder ``path`` (nothing is downloaded).

        ``dtype`` is one of `DTYPES` (``auto``: as the checkpoint is stored); ``device`` defaults to
        CUDA when available.
        """
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        folder = check_model_folder(path)
        if dtype not in DTYPES:
            raise AnnotationError(f"dtype {dtype!r} is unknown; expected one of {', '.join(DTYPES)}")
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise AnnotationModelError(
                f"cannot read the model config in '{folder}': {error}\n{model_help(folder)}"
            ) from None
        if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            raise AnnotationModelError(
                f"'{folder}' holds a '{config.model_type}' model, not an image-text-to-text (vision-language) "
                f"model that transformers can load with AutoModelForImageTextToText.\n{model_help(folder)}"
            )
        torch_dtype = "auto" if DTYPES[dtype] == "auto" else getattr(torch, DTYPES[dtype])
        # transformers 4.56 renamed torch_dtype to dtype.
        major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
        dtype_keyword = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        try:
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(
                folder, local_files_only=True, **{dtype_keyword: torch_dtype}
            )
        except OSError as error:
            raise AnnotationModelNotFoundError(
                f"cannot load the model in '{folder}': {error}\n{model_help(folder)}"
            ) from None
        except ImportError as error:
            # transformers 5 builds Qwen2-VL-style processors with a video processor that needs torchvision.
            raise AnnotationModelError(
                f"loading the model in '{folder}' needs a library that is not installed: "
                f"{' '.join(str(error).split())}\nInstall it, e.g. `pip install torchvision` (the build that "
                "matches your torch; on a CPU-only machine from https://download.pytorch.org/whl/cpu)."
            ) from None
        if not getattr(processor, "chat_template", None):
            raise AnnotationModelError(
                f"the processor in '{folder}' has no chat template, so there is no way to ask it a question; "
                f"use an instruction-tuned (chat) checkpoint.\n{model_help(folder)}"
            )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device).eval(), processor, max_new_tokens=max_new_tokens)

    def answer(self, images: Sequence, instruction: str) -> str:
        """The model's greedy answer to ``instruction`` about ``images`` (PIL images, in order)."""
        import torch

        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": instruction}]
        # Render the chat text first, then let the processor expand the image placeholders: this works on
        # every transformers version that has AutoModelForImageTextToText.
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[text], images=list(images), return_tensors="pt")
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()


def instruction_for(num_images: int) -> str:
    """The question asked about one video shown as ``num_images`` frames."""
    return INSTRUCTION.format(count=num_images)


def answer_excerpt(answer: str) -> str:
    """The start of an answer on one line, quoted, for error messages."""
    flat = " ".join(answer.split())
    return repr(flat if len(flat) <= _EXCERPT_CHARS else flat[:_EXCERPT_CHARS] + "...")


def parse_answer(answer: str, video: str) -> VideoPrompts:
    """The prompts entry of ``video`` from a model's answer; raises AnswerParseError naming what is wrong.

    The answer should hold one JSON object with the keys of `ANSWER_FIELDS`; it may sit in a code fence
    or in prose, have trailing commas or typographic quotes, use the file's nested form (``sub:
    {subject, prompt}``, ``back: {prompt}``) or a few other key names. Subjects lose a leading article.
    The entry must then pass the prompts-file validator (subject words occur in their prompts, ...).
    """
    data = _first_object(answer)
    if data is None:
        cut_off = answer.count("{") > answer.count("}")
        hint = " (it looks cut off: raise --max-new-tokens)" if cut_off else ""
        raise AnswerParseError(video, answer, [f"no JSON object found{hint}"])
    values, problems = _fields(data)
    if problems:
        raise AnswerParseError(video, answer, problems)
    entry = {
        "subject": values["subject"],
        "prompt": values["prompt"],
        "sub": {"subject": values["sub_subject"], "prompt": values["sub_prompt"]},
        "back": {"prompt": values["back_prompt"]},
    }
    problems = validate_prompts({"videos": {video: entry}})
    if problems:
        raise AnswerParseError(video, answer, problems)
    return VideoPrompts(
        video=video,
        subject=values["subject"],
        prompt=values["prompt"],
        sub_subject=values["sub_subject"],
        sub_prompt=values["sub_prompt"],
        back_prompt=values["back_prompt"],
    )


def _first_object(answer: str) -> dict | None:
    # The first object that has a known key; prose such as "{like this}" can decode to an unrelated one.
    candidates = [match.group(1) for match in _FENCED_BLOCK.finditer(answer)] + _balanced_objects(answer)
    decoded = [data for data in (_decode_object(candidate.strip()) for candidate in candidates) if data]
    known = {alias for aliases in _FIELD_ALIASES.values() for alias in aliases} | set(_NESTED_FIELDS)
    for data in decoded:
        if any(_key(key) in known for key in data):
            return data
    return decoded[0] if decoded else None


def _balanced_objects(text: str) -> list[str]:
    # Top-level {...} spans; braces inside double-quoted strings do not count.
    spans, depth, start, in_string, escaped = [], 0, 0, False, False
    for index, character in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character in "\"\u201d":
                in_string = False
        elif character in "\"\u201c":
            in_string = depth > 0
        elif character == "{":
            if depth == 0:
                start = index
            depth += 1
        elif character == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : index + 1])
    return spans


def _decode_object(text: str) -> dict | None:
    repaired = _TRAILING_COMMA.sub(r"\1", text.replace("\u201c", '"').replace("\u201d", '"'))
    for attempt in (text, repaired):
        try:
            data = json.loads(attempt)
        except json.JSONDecodeError:
            continue
        return data if isinstance(data, dict) else None
    try:  # YAML flow style also reads unquoted keys and single-quoted strings
        data = yaml.safe_load(repaired)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _fields(data: dict) -> tuple[dict[str, str], list[str]]:
    flat: dict[str, object] = {}
    for key, value in data.items():
        name = _key(key)
        if name in _NESTED_FIELDS and isinstance(value, dict):
            for inner_key, inner_value in value.items():
                inner = _NESTED_FIELDS[name].get(_key(inner_key))
                if inner is not None:
                    flat.setdefault(inner, inner_value)
            continue
        for field_name, aliases in _FIELD_ALIASES.items():
            if name in aliases:
                flat.setdefault(field_name, value)
    values, problems = {}, []
    missing = [name for name in ANSWER_FIELDS if name not in flat]
    if missing:
        problems.append(
            f"the answer has no {', '.join(repr(name) for name in missing)} "
            f"(expected the keys {', '.join(ANSWER_FIELDS)}; it has {', '.join(map(str, data)) or 'none'})"
        )
    for name in ANSWER_FIELDS:
        if name not in flat:
            continue
        value = flat[name]
        if not isinstance(value, str) or not value.strip():
            problems.append(f"'{name}' must be a non-empty string, got {value!r}")
            continue
        text = " ".join(value.split()).strip("\"'`")
        if name.endswith("subject"):
            text = _LEADING_ARTICLE.sub("", text.rstrip(".,;:!")).strip()
        values[name] = text
    return values, problems


def _key(key: object) -> str:
    return str(key).strip().lower().replace("-", "_").replace(" ", "_")


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", type=Path, required=True, help="DAVIS-layout folder (JPEGImages/[480p/]<video>/...)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        help=f"local image-text-to-text model folder with a chat template, e.g. a copy of {RECOMMENDED_MODEL}",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="prompts file to write (.yaml or .json); rerun to resume"
    )
    parser.add_argument("--videos", default=None, help="comma-separated subset of the dataset's videos")
    parser.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_NUM_FRAMES,
        help="evenly spaced frames shown per video (default: %(default)s)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="longest answer in tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="annotate again the videos already in --out"
    )
    parser.add_argument(
        "--resolution", default=DEFAULT_RESOLUTION, help="DAVIS resolution folder (default: %(default)s)"
    )
    parser.add_argument(
        "--dtype", default="auto", choices=list(DTYPES), help="weights dtype (default: as stored)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        if args.frames < 1 or args.max_new_tokens < 1:
            raise AnnotationError(
                f"--frames {args.frames} and --max-new-tokens {args.max_new_tokens} must both be at least 1"
            )
        check_model_folder(args.model)
        videos = [name.strip() for name in (args.videos or "").split(",") if name.strip()]
        plan = plan_annotation(args.dataset, args.out, videos, args.overwrite, args.resolution)
        if plan.pending:
            model = VisionLanguageModel.from_path(
                args.model, device=args.device, dtype=args.dtype, max_new_tokens=args.max_new_tokens
            )
            result = annotate(plan, model.answer, num_frames=args.frames, progress=not args.no_progress)
        else:  # nothing to ask: the model is not loaded
            result = AnnotationResult(out=plan.out, skipped=list(plan.skipped))
    except (
        AnnotationError,
        AnnotationModelError,
        AnnotationModelNotFoundError,
        DatasetError,
        PromptsFileError,
    ) as error:
        print(f"attnkit-lmp annotate: error: {error}", file=sys.stderr)
        return 2
    for failure in result.failed.values():
        print(f"attnkit-lmp annotate: {failure}", file=sys.stderr)
    print(result.describe())
    return 1 if result.failed else 0


register_command(
    "annotate",
    "write a dataset's prompts file with a local vision-language model (resumable)",
    add_arguments,
    run,
)
