"""The FBDM layer study records the maps FBDM averages, rebuilds FBDM's own mask from them, and ranks masks."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attnkit_lmp.fbdm import FBDMLayerMaps, normalise_per_frame
from attnkit_lmp.toy.cli import main as toy_main
from attnkit_lmp.toy.fbdm_layers import (
    configured_row,
    layer_sets_of,
    record_layer_maps,
    run_with_layer_maps,
    score_masks,
)
from attnkit_lmp.toy.measure import measurement_cases, world_of
from attnkit_lmp.toy.measure.settings import toy_lmp_config
from attnkit_lmp.toy.model import toy_config_of
from attnkit_lmp.toy.scores import ground_truth_on_grid
from tiny_toys import TINY_MODEL, saved_toy_pipeline

TWO_LAYERS = replace(TINY_MODEL, num_layers=2)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return saved_toy_pipeline(TWO_LAYERS, tmp_path_factory.mktemp("two_layer_toy"))


def lmp_run(pipeline, fbdm_layers):
    config = toy_lmp_config(4, model=toy_config_of(pipeline), fbdm_layers=fbdm_layers, fbdm_steps=3)
    case = measurement_cases(1, "validation", world=world_of(pipeline))[0]
    recorder, _, result = run_with_layer_maps(pipeline, case, config)
    return config, recorder, result


@pytest.mark.parametrize("fbdm_layers", [None, [1]])
def test_the_recorded_maps_rebuild_fbdms_own_masks_at_every_refresh(pipeline, fbdm_layers):
    config, recorder, result = lmp_run(pipeline, fbdm_layers)
    assert recorder.recorded_steps() == [0, 1, 2]  # FBDM's refreshes, and no step after them
    assert recorder.recorded_layers() == [0, 1]  # every layer, whatever FBDM averages
    for record in result.masks:
        rebuilt = normalise_per_frame(recorder.layer_map(fbdm_layers, record.step)) >= config.fg_threshold
        assert torch.equal(rebuilt, record.mask)
        assert torch.allclose(normalise_per_frame(recorder.layer_map(fbdm_layers, record.step)), record.attention_map)


def test_the_other_layer_set_gives_another_map(pipeline):
    _, recorder, _ = lmp_run(pipeline, None)
    assert not torch.allclose(recorder.layer_map([0], 2), recorder.layer_map([1], 2))


def test_asking_for_an_unrecorded_step_or_layer_names_what_was_recorded(pipeline):
    _, recorder, _ = lmp_run(pipeline, None)
    with pytest.raises(ValueError, match=r"recorded steps: \[0, 1, 2\]"):
        recorder.layer_map(None, 3)
    with pytest.raises(ValueError, match=r"recorded layers: \[0, 1\]"):
        recorder.layer_map([5], 0)


def test_a_layer_whose_map_is_the_true_mask_ranks_first_and_an_inverted_one_last():
    # A 2-frame, 16 x 16 px clip on a 4 x 4 grid: the subject fills the top-left 8 x 8 px, a distractor
    # the bottom-right 4 x 4 px.
    masks = np.zeros((2, 16, 16), bool)
    masks[:, :8, :8] = True
    distractor = np.zeros((2, 16, 16), bool)
    distractor[:, 12:, 12:] = True
    clip = SimpleNamespace(masks=masks, distractor_masks=distractor)
    truth = ground_truth_on_grid(masks, (2, 4, 4))
    inverted = torch.from_numpy((~truth).astype(np.float32))
    recorder = FBDMLayerMaps([0])
    recorder.maps = {(0, 0): torch.from_numpy(truth.astype(np.float32))}
    recorder.maps.update({(0, layer): inverted for layer in (1, 2, 3)})
    scores = score_masks([(recorder, clip)], step=0, thresholds=(0.5,))
    assert scores[0].layers == "layer 0"
    assert scores[0].iou == pytest.approx(1.0)
    assert scores[0].foreground_fraction == pytest.approx(0.25)
    assert scores[0].distractor_caught == pytest.approx(0.0)
    assert scores[-1].iou == pytest.approx(0.0) and scores[-1].distractor_caught == pytest.approx(1.0)
    assert {score.layers for score in scores} == {"all", "first_half", "last_half"} | {f"layer {i}" for i in range(4)}


def test_layer_sets_are_the_searchs_names_and_each_single_layer():
    sets = layer_sets_of([0, 1, 2, 3])
    assert sets["all"] is None and sets["first_half"] == [0, 1] and sets["last_half"] == [2, 3]
    assert sets["layer 2"] == [2] and len(sets) == 7
    assert layer_sets_of([0, 1]) == {"all": None, "first_half": [0], "last_half": [1]}  # no set twice


def test_the_configured_setting_is_found_among_the_named_sets():
    layers = [0, 1, 2, 3]
    assert configured_row(SimpleNamespace(fbdm_layers=None, fg_threshold=0.4), layers) == ("all", 0.4)
    assert configured_row(SimpleNamespace(fbdm_layers=[3, 2, 1, 0], fg_threshold=0.4), layers) == ("all", 0.4)
    assert configured_row(SimpleNamespace(fbdm_layers=[2, 3], fg_threshold=0.6), layers) == ("last_half", 0.6)
    assert configured_row(SimpleNamespace(fbdm_layers=[1], fg_threshold=0.6), layers) == ("layer 1", 0.6)
    assert configured_row(SimpleNamespace(fbdm_layers=[0, 3], fg_threshold=0.6), layers) == ("", 0.6)


def test_record_layer_maps_gives_one_recording_per_case(pipeline):
    world = world_of(pipeline)
    cases = measurement_cases(2, "validation", world=world)
    config = toy_lmp_config(3, model=toy_config_of(pipeline), fbdm_steps=2)
    recordings = record_layer_maps(pipeline, cases, config, progress=False)
    assert [clip.spec for _, clip in recordings] == [case.reference for case in cases]
    assert all(recorder.recorded_steps() == [0, 1] for recorder, _ in recordings)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--thresholds", "0.4,2"], "values in \\[0, 1\\]"),
        (["--thresholds", "x"], "comma-separated"),
        (["--clips", "0"], "at least 1"),
        (["--rows", "0"], "at least 1 row"),
    ],
)
def test_bad_command_arguments_are_refused_before_the_model_loads(arguments, message, capsys):
    with pytest.raises(SystemExit, match=message):
        toy_main(["fbdm-layers", "--model", "/nonexistent", *arguments])
