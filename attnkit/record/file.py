"""The record file: one safetensors file whose arrays are the maps and whose header carries the JSON metadata.

Layout: tensor ``maps/<branch>`` per branch (float32, ``(steps, layers, tokens, frames, height, width)``),
and in the safetensors header metadata the key ``attnkit.record`` holding a JSON object (see
:meth:`AttentionRecord.metadata`) plus ``attnkit.format`` / ``attnkit.format_version``. One file keeps
arrays and metadata from drifting apart, is written with a single atomic rename, needs no pickle, and
the JSON can be read by any safetensors reader without torch or the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from ..errors import AttnkitError
from .atomic import atomic_write_bytes
from .maps import DIRECTIONS, AttentionRecord

FORMAT_NAME = "attnkit-attention-record"
FORMAT_VERSION = "1"
METADATA_KEY = "attnkit.record"
TENSOR_PREFIX = "maps/"
REQUIRED_FIELDS = (
    "branches",
    "grid",
    "tokens",
    "token_positions",
    "steps",
    "timesteps",
    "layers",
    "layer_names",
)


class RecordFileError(AttnkitError, ValueError):
    """A record file cannot be read: not safetensors, truncated, or metadata and arrays disagree."""


def save_record(record: AttentionRecord, path: str | os.PathLike) -> Path:
    """Write ``record`` to ``path`` atomically (temporary file + rename): the old file or the new, never half.

    The record is checked first, so a record whose arrays do not match its metadata is never written.
    """
    _check_consistent(
        record.metadata(), {branch: tuple(maps.shape) for branch, maps in record.maps.items()}, path
    )
    tensors = {
        f"{TENSOR_PREFIX}{branch}": maps.detach().to("cpu", torch.float32).contiguous()
        for branch, maps in record.maps.items()
    }
    header = {
        "attnkit.format": FORMAT_NAME,
        "attnkit.format_version": FORMAT_VERSION,
        METADATA_KEY: json.dumps(record.metadata(), allow_nan=False),
    }
    return atomic_write_bytes(path, safetensors_bytes(tensors, metadata=header))


def load_record(path: str | os.PathLike) -> AttentionRecord:
    """Read a record file written by :func:`save_record`; needs neither the model nor diffusers.

    Raises :class:`RecordFileError` naming the file and what is wrong when it is truncated, is not a
    record, or its metadata does not describe its arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"record file {path} does not exist; write one with save_record(record, path)"
        )
    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
            names = list(file.keys())
            tensors = {name: file.get_tensor(name) for name in names}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise RecordFileError(
            f"{path} is not a readable safetensors file ({error}); it may be truncated or not a record. "
            "Record and save it again"
        ) from error

    if header.get("attnkit.format") != FORMAT_NAME or METADATA_KEY not in header:
        raise RecordFileError(
            f"{path} is a safetensors file but not an attnkit attention record (its header has no "
            f"{METADATA_KEY!r} metadata); write records with attnkit.record.save_record"
        )
    version = header.get("attnkit.format_version")
    if version != FORMAT_VERSION:
        raise RecordFileError(
            f"{path} is record format version {version!r}; this attnkit reads version {FORMAT_VERSION!r}. "
            "Upgrade attnkit or re-save the record with this version"
        )
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise RecordFileError(
            f"{path} has record metadata that is not valid JSON ({error}); re-save the record"
        ) from error

    maps = {}
    for name, tensor in tensors.items():
        if not name.startswith(TENSOR_PREFIX):
            raise RecordFileError(
                f"{path} holds an unexpected array {name!r}; record arrays are named {TENSOR_PREFIX}<branch>"
            )
        maps[name[len(TENSOR_PREFIX) :]] = tensor
    _check_consistent(metadata, {branch: tuple(tensor.shape) for branch, tensor in maps.items()}, path)
    for branch, tensor in maps.items():
        if tensor.dtype != torch.float32:
            raise RecordFileError(
                f"{path}: array of branch {branch!r} is {tensor.dtype}, expected torch.float32"
            )
    try:
        return AttentionRecord.from_metadata(metadata, maps)
    except TypeError as error:
        raise RecordFileError(
            f"{path} has record metadata with unknown fields ({error}); re-save the record"
        ) from error


def _check_consistent(metadata: dict, shapes: dict[str, tuple[int, ...]], path) -> None:
    """Raise RecordFileError unless the metadata describes exactly these arrays."""
    if not isinstance(metadata, dict):
        raise RecordFileError(f"{path}: record metadata is a {type(metadata).__name__}, expected a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in metadata]
    if missing:
        raise RecordFileError(f"{path}: record metadata lacks {missing}; it was not written by save_record")
    _check_field_types(metadata, path)
    branches = list(metadata["branches"])
    if sorted(branches) != sorted(shapes):
        raise RecordFileError(
            f"{path}: metadata names branches {branches} but the file has arrays for {sorted(shapes)}; "
            "the metadata does not match the arrays"
        )
    problems = []
    if len(metadata["token_positions"]) != len(metadata["tokens"]):
        problems.append(
            f"{len(metadata['tokens'])} tokens but {len(metadata['token_positions'])} token position lists"
        )
    if len(metadata["timesteps"]) != len(metadata["steps"]):
        problems.append(f"{len(metadata['steps'])} steps but {len(metadata['timesteps'])} timesteps")
    if len(metadata["layer_names"]) != len(metadata["layers"]):
        problems.append(f"{len(metadata['layers'])} layers but {len(metadata['layer_names'])} layer names")
    if metadata.get("direction", "both") not in DIRECTIONS:
        problems.append(f"direction {metadata.get('direction')!r} is not one of {list(DIRECTIONS)}")
    if len(metadata["grid"]) != 3:
        problems.append(f"grid {metadata['grid']} is not (frames, height, width)")
    if problems:
        raise RecordFileError(f"{path}: record metadata is inconsistent: {'; '.join(problems)}")
    num_steps = 1 if metadata.get("step_reduction") else len(metadata["steps"])
    num_layers = 1 if metadata.get("layer_reduction") else len(metadata["layers"])
    if not metadata["steps"]:
        num_steps = 0
    expected = (num_steps, num_layers, len(metadata["tokens"]), *metadata["grid"])
    for branch, shape in shapes.items():
        if tuple(shape) != expected:
            raise RecordFileError(
                f"{path}: array of branch {branch!r} has shape {tuple(shape)} but the metadata describes "
                f"{expected} (steps, layers, tokens, frames, height, width); "
                "the metadata does not match the arrays"
            )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list_of(check, allow_none_items: bool = False):
    def checker(value) -> bool:
        return isinstance(value, list) and all(
            (item is None and allow_none_items) or check(item) for item in value
        )

    return checker


def _optional(check):
    return lambda value: value is None or check(value)


# Each metadata field and the JSON shape it must have; a hand-edited or foreign file that breaks one would
# otherwise crash deep in the page builder (``None`` has no len, ``"999" + 1``) instead of naming the field.
_FIELD_TYPES = {
    "branches": (_list_of(lambda v: isinstance(v, str)), "a list of branch names"),
    "grid": (lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(n) and n > 0 for n in v),
             "[frames, height, width], positive integers"),
    "tokens": (_list_of(lambda v: isinstance(v, str)), "a list of token labels"),
    "token_positions": (_list_of(_list_of(lambda v: _is_int(v) and v >= 0)),
                        "a list of lists of non-negative token positions"),
    "steps": (_list_of(_is_int), "a list of step numbers"),
    "timesteps": (_list_of(_is_number, allow_none_items=True), "a list of numbers (or null), one per step"),
    "layers": (_list_of(_is_int), "a list of layer indices"),
    "layer_names": (_list_of(lambda v: isinstance(v, str)), "a list of layer names"),
    "direction": (lambda v: isinstance(v, str), "a string"),
    "heads": (lambda v: isinstance(v, str) or _list_of(_is_int)(v), '"mean" or a list of head indices'),
    "step_reduction": (_optional(lambda v: isinstance(v, str)), "null or a reduction name"),
    "layer_reduction": (_optional(lambda v: isinstance(v, str)), "null or a reduction name"),
    "layout": (lambda v: isinstance(v, dict) and all(_list_of(_is_int)(span) and len(span) == 2 for span in v.values()),
               "an object of span name -> [start, stop]"),
    "prompt": (_optional(lambda v: isinstance(v, str)), "null or a string"),
    "prompt_tokens": (_optional(_list_of(lambda v: isinstance(v, str))), "null or a list of strings"),
    "num_heads": (_optional(_is_int), "null or an integer"),
    "complete": (lambda v: isinstance(v, bool), "true or false"),
}


def _check_field_types(metadata: dict, path) -> None:
    for name, (check, expected) in _FIELD_TYPES.items():
        if name in metadata and not check(metadata[name]):
            raise RecordFileError(
                f"{path}: record metadata field {name!r} is {json.dumps(metadata[name])[:80]}, expected "
                f"{expected}; the file was edited or not written by save_record. Record and save it again"
            )
