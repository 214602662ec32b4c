"""End to end on the trained toy model: LMP copies a held-out clip's motion, the stock pipeline does not.

A small fixed set of held-out reference clips (test split of :mod:`attnkit_lmp.toy.measure`), each
transferred to a target of another colour and shape, from the same noise with and without LMP. The
assertion is on motion fidelity of the object's centroid track with a margin, not on pixels.

Runs on the two models bundled in the package, the CogVideoX toy and the Wan 2.1-architecture toy trained by
the same script (the same plugins, unchanged, on joint and on self + cross attention). Each runs with the
settings its folder's ``lmp_defaults.json`` gives it, as ``attnkit-lmp transfer`` does. ``ATTNKIT_TOY_MODEL=/path/to/pipeline`` points it at one other toy
pipeline folder instead (e.g. a training run's ``pipeline/``).
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit_lmp.toy.measure import measure, measurement_cases, model_defaults_of, toy_lmp_config
from attnkit_lmp.toy.measure.summary import GOALS
from attnkit_lmp.toy.model import toy_config_of
from attnkit_lmp.toy.pretrained import BUNDLED_PIPELINE, BUNDLED_WAN_PIPELINE, load_toy_pipeline

# (model folder, reference clips): the CogVideoX toy's transfer varies more from clip to clip (on a gray
# background with a distractor it mostly fails), so it is judged on the 16 clips of the documented test
# measurement (docs/toy-measurement.md), whose averages its goals are stated over.
MODELS = (
    [(Path(os.environ["ATTNKIT_TOY_MODEL"]), 16)]
    if "ATTNKIT_TOY_MODEL" in os.environ
    else [(BUNDLED_PIPELINE, 16), (BUNDLED_WAN_PIPELINE, 4)]
)
STEPS = 25
MARGIN = 0.3

# About 20 s for the Wan toy's 4 clips (x 2 runs x 25 steps) and 2 min for the CogVideoX toy's 16 on a
# shared machine: marked slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=MODELS, ids=lambda model: model[0].name)
def report(request):
    model, clips = request.param
    if not (model / "model_index.json").is_file():
        pytest.skip(f"no trained toy model at {model}; train one (docs/toy-world.md) or set ATTNKIT_TOY_MODEL")
    torch.set_num_threads(1)
    pipe = load_toy_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    toy = toy_config_of(pipe)
    cases = measurement_cases(clips, "test", world=toy.world)
    config = toy_lmp_config(STEPS, model=toy, defaults=model_defaults_of(pipe))
    return measure(pipe, cases, config, variants=("baseline", "lmp"), progress=False)


def _scores(report, variant, key="motion_fidelity_centroid"):
    return np.array([record[key] for record in report["records"] if record["variant"] == variant])


def test_lmp_beats_the_baseline_on_motion_fidelity_by_a_margin(report):
    lmp, baseline = _scores(report, "lmp"), _scores(report, "baseline")
    assert lmp.mean() >= baseline.mean() + MARGIN, (lmp, baseline)


def test_lmp_beats_the_baseline_on_most_clips(report):
    lmp, baseline = _scores(report, "lmp"), _scores(report, "baseline")
    assert (lmp > baseline).sum() >= 0.75 * len(lmp), (lmp, baseline)


def test_lmp_follows_the_reference_path_closer_than_its_time_reversal(report):
    error = _scores(report, "lmp", "path_error")
    reversed_error = _scores(report, "lmp", "path_error_reversed")
    assert np.nanmean(error) < np.nanmean(reversed_error), (error, reversed_error)


def test_lmp_keeps_the_prompts_colour_in_every_clip(report):
    # The reference's motion, not its look: RMTM keeps the prompt's share of attention (joint attention),
    # so no clip takes the reference's colour (with the one softmax over all keys, one of the first
    # world's four CogVideoX clips had 13 % of its object in the reference's colour). On average the
    # leak stays within the goal of 2 % of the object's pixels (GOALS); the v2 toy's larger FBDM mask
    # leaves up to 11 % in single clips (two blue-square references), never the object's main colour.
    assert _scores(report, "lmp", "colour_kept").all(), _scores(report, "lmp", "colour")
    leak = _scores(report, "lmp", "reference_colour_share")
    assert leak.mean() <= GOALS["lmp_reference_colour_share_max"] and leak.max() <= 0.15, leak
