"""LMP settings a model folder brings with it: ``lmp_defaults.json`` beside ``model_index.json``.

A checkpoint trained or tuned for LMP (the bundled toys, or your own) can say which settings suit it, so
that ``attnkit-lmp transfer --model FOLDER`` works without the user knowing them::

    {
      "about": "why these settings (free text, optional)",
      "config": {"fg_threshold": 0.2, "fbdm_layers": [0, 1, 2], "fbdm_steps": 20},
      "call": {"num_inference_steps": 50, "guidance_scale": 4.0}
    }

``config`` holds :class:`~attnkit_lmp.config.LMPConfig` fields; ``call`` the pipeline-call settings that
LMPConfig carries too (steps, guidance, geometry). Step thresholds are meant for ``call``'s
``num_inference_steps`` (those left out are the paper's, scaled to it); a run with other ``--steps``
scales them by the same ratio. The CLI layers the
settings as: the paper's defaults, then this file, then ``--config``, then explicit flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

DEFAULTS_FILE = "lmp_defaults.json"
# The LMPConfig fields that are arguments of the pipeline call: what the "call" section may hold.
CALL_FIELDS = frozenset(
    {
        "num_inference_steps",
        "guidance_scale",
        "use_dynamic_cfg",
        "height",
        "width",
        "num_frames",
        "max_sequence_length",
        "negative_prompt",
        "true_cfg_scale",
    }
)
THRESHOLDS = ("fbdm_steps", "rmtm_steps", "asm_steps")


class ModelDefaultsError(ValueError):
    """A model folder's ``lmp_defaults.json`` cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ModelDefaults:
    """The settings of one ``lmp_defaults.json``: ``values`` are LMPConfig fields, ``path`` the file."""

    path: Path
    values: dict

    @classmethod
    def of_folder(cls, folder: str | Path) -> ModelDefaults | None:
        """The defaults in ``folder/lmp_defaults.json``, or None when the folder has none."""
        path = Path(folder) / DEFAULTS_FILE
        if not path.is_file():
            return None
        return cls.load(path)

    @classmethod
    def load(cls, path: str | Path) -> ModelDefaults:
        from .config import LMPConfig, LMPConfigError

        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ModelDefaultsError(f"cannot read model defaults {str(path)!r}: {error}") from None
        if not isinstance(payload, dict):
            raise ModelDefaultsError(
                f"model defaults {str(path)!r} must be a JSON object with 'config' and 'call' sections"
            )
        unknown_sections = sorted(set(payload) - {"about", "config", "call"})
        if unknown_sections:
            raise ModelDefaultsError(
                f"model defaults {str(path)!r} has unknown sections {unknown_sections}; expected 'config' "
                "(LMPConfig fields), 'call' (steps, guidance, geometry) and an optional 'about'"
            )
        config, call = payload.get("config", {}), payload.get("call", {})
        for name, section in (("config", config), ("call", call)):
            if not isinstance(section, dict):
                raise ModelDefaultsError(f"model defaults {str(path)!r}: {name!r} must be an object")
        known = {field.name for field in fields(LMPConfig)}
        for key in config:
            if key not in known:
                raise ModelDefaultsError(
                    f"model defaults {str(path)!r}: config key {key!r} is not an LMPConfig field; "
                    f"expected one of {sorted(known)}"
                )
        for key in call:
            if key not in CALL_FIELDS:
                raise ModelDefaultsError(
                    f"model defaults {str(path)!r}: call key {key!r} is not a pipeline-call setting; "
                    f"expected one of {sorted(CALL_FIELDS)}"
                )
        values = {**config, **call}
        try:
            if "num_inference_steps" in values:
                # Thresholds the file leaves out are the paper's, scaled to the file's step count.
                paper = LMPConfig.for_steps(values["num_inference_steps"])
                values = {**{name: getattr(paper, name) for name in THRESHOLDS}, **values}
            LMPConfig.from_dict(values).validate()
        except LMPConfigError as error:
            raise ModelDefaultsError(f"model defaults {str(path)!r}: {error}") from None
        return cls(path=path, values=values)


def scale_thresholds(values: dict, num_inference_steps: int) -> dict:
    """``values`` for a run of ``num_inference_steps``: its step thresholds scaled from its own step count.

    A threshold that was positive stays at least 1, so a module that ran still runs in a shorter run.
    """
    from .config import LMPConfig

    old_steps = values.get("num_inference_steps", LMPConfig().num_inference_steps)
    scaled = dict(values, num_inference_steps=num_inference_steps)
    for name in THRESHOLDS:
        value = values.get(name, getattr(LMPConfig(), name))
        new = round(value * num_inference_steps / old_steps)
        scaled[name] = max(1 if value > 0 else 0, min(num_inference_steps, new))
    return scaled


def config_file_values(path: Path) -> dict:
    """The fields an LMPConfig file (JSON/YAML, or a run record's ``config`` part) sets, as written."""
    text = Path(path).read_text()
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if isinstance(values.get("config"), dict) and "run" in values:
        values = values["config"]
    return dict(values)


def layered_config(model: str, config_file: Path | None = None, flags: dict | None = None, steps: int | None = None):
    """The LMPConfig a command runs ``model`` with, and where each of its settings came from.

    Later layers win: the paper's defaults, the model folder's ``lmp_defaults.json``, ``config_file``,
    ``flags`` (``{field: (value, "--flag")}``, None values skipped), then ``steps``, to which every step
    threshold is scaled from the step count it was set for. Returns ``(config, sources)``, ``sources``
    naming the origin of each field not left at the paper's default. Raises :class:`ModelDefaultsError`
    for a bad ``lmp_defaults.json`` and :class:`~attnkit_lmp.config.LMPConfigError` for a bad setting.
    """
    from .config import LMPConfig

    values: dict = {}
    sources: dict[str, str] = {}
    defaults = ModelDefaults.of_folder(model)  # None for a hub id or a folder without the file
    if defaults is not None:
        values.update(defaults.values)
        sources.update(dict.fromkeys(defaults.values, str(defaults.path)))
    if config_file is not None:
        LMPConfig.load(config_file)  # every error in the file, with the file's name
        given = config_file_values(config_file)
        values.update(given)
        sources.update(dict.fromkeys(given, f"--config {config_file}"))
    for name, (value, flag) in (flags or {}).items():
        if value is not None:
            values[name] = value
            sources[name] = flag
    if steps is not None:
        scaled = scale_thresholds(values, steps)
        for name, value in scaled.items():
            if values.get(name, getattr(LMPConfig(), name)) != value or name == "num_inference_steps":
                sources[name] = f"--steps {steps}"
        values = scaled
    config = LMPConfig.from_dict(values).validate()
    paper = LMPConfig().to_dict()
    # A field set back to the paper's value still says who set it; only untouched fields are the paper's.
    return config, {name: source for name, source in sources.items() if name in paper}


def describe_settings(config, sources: dict[str, str]) -> str:
    """One line per origin: the settings that differ from the paper's, and where each came from."""
    from .config import LMPConfig

    paper = LMPConfig()
    by_source: dict[str, list[str]] = {}
    for name, source in sources.items():
        value = getattr(config, name)
        if value != getattr(paper, name) or name == "num_inference_steps":
            by_source.setdefault(source, []).append(f"{name}={value!r}")
    lines = [f"settings from {source}: {', '.join(sorted(names))}" for source, names in by_source.items()]
    lines.append("other settings: the paper's defaults (LMPConfig; docs/lmp.md)")
    return "\n".join(lines)
