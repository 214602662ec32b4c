"""The LMPConfig of a toy measurement: the tuned toy settings, step thresholds as fractions, named layer sets.

The [choice] hyper-parameters (docs/method.md) were chosen for the bundled CogVideoX toy by the coordinate
search (:mod:`.search`) on the validation split. Step thresholds are fractions of the run's steps, so one
setting serves any ``--steps``; layer sets are named relative to the model's depth (:func:`layer_set`).
A model folder's ``lmp_defaults.json`` (:mod:`attnkit_lmp.model_defaults`) replaces these settings, so
that a toy is measured with the settings ``attnkit-lmp transfer`` gives it.
"""

from __future__ import annotations

import json


class MeasureError(ValueError):
    """A measurement setting cannot run; the message names it and how to fix it."""


# The toy model was trained with this guidance; LMP and baseline use the same value.
TOY_GUIDANCE_SCALE = 4.0
DEFAULT_STEPS = 50

# LMP hyper-parameters for the bundled CogVideoX toy, chosen by the coordinate search on the validation
# split (docs/toy-measurement.md); the bundled folder's lmp_defaults.json holds the same values. ASM's eta
# is 100 x the paper's 100: what a step does depends on the scale of the model's hidden states
# (examples/asm_step_size.py prints it).
TOY_STEP_FRACTIONS: dict[str, float] = {"fbdm_steps": 0.4, "rmtm_steps": 0.7, "asm_steps": 0.7}
TOY_LMP_SETTINGS: dict[str, object] = {
    "fbdm_layers": "all",
    "fg_threshold": 0.2,
    "asm_eta": 10000.0,
    "rmtm_lambda": 1.5,
    "rmtm_keep_prompt_share": True,
    "rmtm_cfg_rows": "both",
    "rmtm_scale_values": False,
}
# Layer sets by name, relative to the model's depth: checkpoints of different depths share one setting.
LAYER_SETS = ("all", "first_half", "last_half", "last")


def layer_set(name, num_layers: int) -> list[int] | None:
    """A named layer set of a ``num_layers``-deep model as LMPConfig wants it (None = all layers).

    Lists and None pass through, so a search space may also name layers explicitly.
    """
    if name is None or isinstance(name, list):
        return name
    half = max(1, num_layers // 2)
    sets = {
        "all": None,
        "first_half": list(range(half)),
        "last_half": list(range(num_layers - half, num_layers)),
        "last": [num_layers - 1],
    }
    if name not in sets:
        raise MeasureError(
            f"layer set {name!r} is unknown: expected one of {list(LAYER_SETS)} or a list of layers."
        )
    return sets[name]


def resolve_layer_sets(overrides: dict, num_layers: int) -> dict:
    """``overrides`` with named layer sets (``*_layers``) turned into layer lists for this model."""
    return {
        name: layer_set(value, num_layers) if name.endswith("_layers") else value
        for name, value in overrides.items()
    }


def model_defaults_of(pipeline):
    """The :class:`~attnkit_lmp.model_defaults.ModelDefaults` of the folder ``pipeline`` was loaded from,
    or None (a pipeline built in memory, or a folder without ``lmp_defaults.json``)."""
    from pathlib import Path

    from attnkit_lmp.model_defaults import ModelDefaults

    folder = str(getattr(pipeline, "name_or_path", "") or "")
    if folder in ("", ".") or not Path(folder).is_dir():
        return None
    return ModelDefaults.of_folder(folder)


def toy_lmp_config(
    num_inference_steps: int = DEFAULT_STEPS,
    num_layers: int | None = None,
    model=None,
    defaults=None,
    **overrides,
):
    """The LMPConfig used on the toy model: tuned settings, thresholds scaled from fractions, overrides last.

    Overrides may name any LMPConfig field, or ``<threshold>_fraction`` (e.g. ``asm_steps_fraction=0.5``).
    Named layer sets are resolved for a ``num_layers``-deep model (default: the toy architecture's depth).
    ``model`` (a :class:`~attnkit_lmp.toy.model.ToyModelConfig`, e.g. ``toy_config_of(pipe)``) sets the
    depth and the geometry (frames, size, text length): a Wan pipeline's own defaults are a real model's.
    ``defaults`` (a model folder's :class:`~attnkit_lmp.model_defaults.ModelDefaults`, e.g.
    ``model_defaults_of(pipe)``) replaces the toy settings; its step thresholds become fractions of its
    own step count.
    """
    from attnkit_lmp.config import LMPConfig
    from attnkit_lmp.toy.model import ToyModelConfig

    fractions = dict(TOY_STEP_FRACTIONS)
    settings = {"guidance_scale": TOY_GUIDANCE_SCALE, **TOY_LMP_SETTINGS}
    if defaults is not None:
        from attnkit_lmp.model_defaults import THRESHOLDS

        folder_values = dict(defaults.values)
        folder_steps = folder_values.pop("num_inference_steps", DEFAULT_STEPS)
        for name in THRESHOLDS:
            if name in folder_values:
                fractions[name] = folder_values.pop(name) / folder_steps
        settings.update(folder_values)
    for name in list(overrides):
        if name.endswith("_fraction") and name.removesuffix("_fraction") in fractions:
            fractions[name.removesuffix("_fraction")] = float(overrides.pop(name))
    thresholds = {
        name: max(0, min(num_inference_steps, round(fraction * num_inference_steps)))
        for name, fraction in fractions.items()
    }
    geometry = {}
    if model is not None:
        num_layers = num_layers or model.num_layers
        geometry = {
            "height": model.height,
            "width": model.width,
            "num_frames": model.num_frames,
            "max_sequence_length": model.text_length,
        }
    values = {
        "num_inference_steps": num_inference_steps,
        **geometry,
        **thresholds,
        **settings,
        **overrides,
    }
    values = resolve_layer_sets(values, num_layers or ToyModelConfig().num_layers)
    return LMPConfig.from_dict(values).validate()


def parse_overrides(items: list[str]) -> dict:
    """``["fg_threshold=0.3", "rmtm_layers=[1,2]"]`` -> dict; values are JSON (bare words stay strings)."""
    overrides = {}
    for item in items or []:
        name, separator, text = item.partition("=")
        if not separator or not name:
            raise MeasureError(f"--set {item!r}: expected NAME=VALUE, e.g. --set fg_threshold=0.3")
        try:
            overrides[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name.strip()] = text
    return overrides
