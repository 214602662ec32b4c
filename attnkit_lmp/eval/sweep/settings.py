"""What a sweep is asked to do: its settings, the LMPConfig every method starts from, and their record.

The part of the settings that decides an item's numbers (:meth:`SweepSettings.fingerprint`) is written to
``sweep.json`` in the output folder; a later sweep into that folder with another fingerprint is refused
(:class:`SweepSettingsMismatchError`), since mixing the two would corrupt the table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...methods import DEFAULT_METHODS, Method
from ..datasets import SPLITS
from ..motion_fidelity import DEFAULT_MIN_DISPLACEMENT, MOTION_FIDELITY_VERSION

SETTINGS_FILE = "sweep.json"
TRACKER_ALIASES = {
    "lk": "lucas-kanade",
    "lucas-kanade": "lucas-kanade",
    "centroid": "centroid",
    "cotracker": "cotracker",
}
PAPER_GRID_SIZE = 55


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
    """An LMPConfig file (JSON/YAML) every method starts from, over the model folder's ``lmp_defaults.json``."""
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


def base_lmp_config(settings: SweepSettings):
    """The LMPConfig every method starts from, and where its settings came from: the paper's defaults, the
    model folder's ``lmp_defaults.json`` (as ``attnkit-lmp transfer`` gives that model), ``--config``,
    ``--guidance-scale``, then ``--steps``."""
    from attnkit_lmp.config import LMPConfigError
    from attnkit_lmp.model_defaults import ModelDefaultsError, layered_config

    flags = {"guidance_scale": (settings.guidance_scale, "--guidance-scale")}
    try:
        return layered_config(settings.model, settings.config, flags, settings.steps)
    except ModelDefaultsError as error:
        raise SweepError(f"{error}; fix the file or remove it to use the paper's defaults") from None
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


def tracker_name(name: str) -> str:
    """The tracker's canonical name (``lk`` is ``lucas-kanade``); an unknown name is an error."""
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
