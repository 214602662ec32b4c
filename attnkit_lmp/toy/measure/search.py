"""The coordinate search of the LMP [choice] settings on the toy world (validation split only)."""

from __future__ import annotations

from .cases import TransferCase
from .measurement import measure
from .settings import DEFAULT_STEPS, model_defaults_of, resolve_layer_sets, toy_lmp_config
from .summary import GOALS

# Tried one parameter at a time, in this order, each from the best setting found so far (coordinate
# search): the [choice] items of docs/method.md that the paper leaves open for a model of this size.
SEARCH_SPACE: tuple[tuple[str, tuple], ...] = (
    # Which layers' subject maps FBDM averages. Layer sets are named relative to the model's depth
    # (see ``layer_set``), since checkpoints differ: in a 4-layer checkpoint the last layer's
    # video->text term was high on the *background*, in a 6-layer one the last two separate best.
    ("fbdm_layers", ("all", "last_half", "last", "first_half")),
    ("fg_threshold", (0.2, 0.4, 0.6)),
    # Whether the reference keys may take the prompt's share of attention (joint attention only), and how
    # strongly they are weighted: with the prompt's share kept, keys above the paper's 0.98 may carry more
    # motion without taking the prompt's colour.
    ("rmtm_keep_prompt_share", (True, False)),
    ("rmtm_lambda", (0.98, 1.5, 2.0)),
    # Which CFG rows see the reference (only the conditional one lets guidance amplify the motion, by the
    # guidance scale), and whether the reference values are scaled by lambda too, as the paper's figure
    # draws it: both open in the paper.
    ("rmtm_cfg_rows", ("both", "cond")),
    ("rmtm_scale_values", (False, True)),
    ("asm_eta", (0.0, 100.0, 1000.0, 10000.0)),  # on the toy model eta 100 moves pixels by <= 0.03, 1e4 by ~1
    ("rmtm_steps_fraction", (0.5, 0.7, 0.9, 1.0)),
    ("asm_steps_fraction", (0.3, 0.7, 1.0)),
    ("fbdm_steps_fraction", (0.4, 0.8)),
    ("rmtm_layers", ("all", "first_half", "last_half")),
)


# A setting replaces the best so far only if it raises the objective by more than this: the objective is
# reported to three decimals, and a tie within float noise must not change a model's settings.
SEARCH_TIE_TOLERANCE = 1e-3

# The LMPConfig fields SEARCH_SPACE tunes (step thresholds under their own names): what a model folder's
# lmp_defaults.json written from a search holds, beside the pipeline-call settings.
SEARCHED_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(name.removesuffix("_fraction") for name, _ in SEARCH_SPACE))
# The pipeline-call settings a toy's lmp_defaults.json fixes: those of model_defaults.CALL_FIELDS that a toy
# pipeline takes (the toys have no negative prompt, dynamic CFG or true CFG).
_CALL_FIELDS = ("num_inference_steps", "guidance_scale", "height", "width", "num_frames", "max_sequence_length")


def searched_defaults(best: dict, model, defaults=None, about: str = "") -> dict:
    """The ``lmp_defaults.json`` document of a search's ``best`` overrides, for a run of DEFAULT_STEPS steps
    (a run with other steps scales the thresholds, as :mod:`attnkit_lmp.model_defaults` says)."""
    values = toy_lmp_config(DEFAULT_STEPS, model=model, defaults=defaults, **best).to_dict()
    return {
        "about": about,
        "config": {name: values[name] for name in SEARCHED_FIELDS},
        "call": {name: values[name] for name in _CALL_FIELDS},
    }


def search_objective(values: dict[str, float]) -> float:
    """What the search maximises: LMP's centroid MF, minus any shortfall of kept look below the goal.

    Centroid MF, not the grid's: Lucas-Kanade cannot follow the inside of a flat-coloured shape, so on the
    toy world grid MF stays low even for a perfect copy (docs/toy-measurement.md)."""
    shortfall = max(0.0, GOALS["lmp_appearance_kept_min"] - values.get("appearance_kept", 0.0))
    return values.get("motion_fidelity_centroid", 0.0) - shortfall


def search(
    pipe, cases: list[TransferCase], steps: int, space=SEARCH_SPACE, progress: bool = True, on_trial=None
):
    """Coordinate search of ``space`` on ``cases`` with the full LMP variant; returns (best overrides, trials).

    It starts from the model folder's ``lmp_defaults.json`` when there is one, else from the toy settings;
    an option replaces the best only when it beats it by more than :data:`SEARCH_TIE_TOLERANCE`."""
    from attnkit_lmp.toy.model import toy_config_of

    model = toy_config_of(pipe)
    defaults = model_defaults_of(pipe)  # the search starts from the model folder's settings
    num_layers = model.num_layers
    best: dict = {}
    best_value = None
    trials = []
    tried: dict[str, dict] = {}
    for name, options in space:
        for option in options:
            overrides = {**best, name: option}
            config = toy_lmp_config(steps, model=model, defaults=defaults, **overrides)
            key = config.to_json()  # equal settings spelt differently run once
            if key not in tried:
                summary = measure(pipe, cases, config, ("lmp",), progress=progress)["summary"]["lmp"]
                tried[key] = {
                    "overrides": overrides,
                    "summary": summary,
                    "objective": search_objective(summary),
                }
                trials.append(tried[key])
                if on_trial is not None:
                    on_trial(tried[key])
            trial = tried[key]
            if best_value is None or trial["objective"] > best_value + SEARCH_TIE_TOLERANCE:
                best_value, best = trial["objective"], dict(overrides)
    return resolve_layer_sets(best, num_layers), trials
