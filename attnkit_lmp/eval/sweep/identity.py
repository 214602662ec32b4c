"""What decides an item's numbers besides the sweep-wide settings, as digests: a changed input recomputes it.

An item's identity covers its prompt, subject and reference texts, a digest of its reference video's files,
the model's files, its method's LMPConfig and the loaded attnkit plugins with their versions. A record whose
identity differs from the item's now is stale: the sweep computes the item again and says what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..datasets import DavisDataset
from ..results import ResultsStore
from .plan import SweepItem
from .settings import SweepSettings, method_config

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
