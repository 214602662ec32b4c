"""The question a vision-language model is asked about one video's frames, and the reading of its answer
into a prompts-file entry (Ori, Sub and Back prompts of that video).

The answer is parsed leniently (code fences, prose around the object, trailing commas, typographic
quotes, other key names), then checked with the prompts-file validator of :mod:`.datasets`; an answer that
fails is an :class:`AnswerParseError` quoting it, never a half-formed entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import yaml

from .datasets import VideoPrompts, validate_prompts

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
