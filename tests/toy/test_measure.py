"""The toy measurement's cases and scores: held-out references, other-looking targets, and metrics that
reward following the reference's path and keeping the target's look, checked on rendered (perfect) videos."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attnkit_lmp.config import LMPConfig
from attnkit_lmp.toy.measure import (
    VALIDATION_SEED_OFFSET,
    MeasureError,
    check_goals,
    measurement_cases,
    parse_overrides,
    toy_lmp_config,
)
from attnkit_lmp.toy.scores import fbdm_scores, ground_truth_on_grid, mask_iou, score_transfer
from attnkit_lmp.toy.world import HELDOUT_TRAJECTORIES, WorldConfig, render_clip, render_path


@pytest.fixture(scope="module")
def case():
    return measurement_cases(1, "test", first_seed=2)[0]


@pytest.fixture(scope="module")
def clip(case):
    return render_clip(case.reference)


def _target_on(path, case, colour=None):
    frames, _ = render_path(colour or case.target_colour, case.target_shape, path, case.reference.background)
    return frames


def test_cases_are_held_out_and_targets_differ_in_colour_and_shape():
    cases = measurement_cases(12, "test")
    for case in cases:
        assert case.reference.split == "heldout" and case.reference.trajectory in HELDOUT_TRAJECTORIES
        assert case.target_colour != case.reference.colour and case.target_shape != case.reference.shape
        assert case.target_colour in case.prompt and case.target_shape in case.prompt
    assert measurement_cases(12, "test") == cases


def test_a_target_never_takes_the_look_of_the_references_distractor():
    from attnkit_lmp.toy.model import ToyModelConfig

    cases = measurement_cases(40, "test", world=ToyModelConfig().world)
    with_distractor = [case for case in cases if case.reference.distractor is not None]
    assert len(with_distractor) >= 10
    for case in with_distractor:
        distractor_colour, distractor_shape, _ = case.reference.distractor
        assert case.target_colour not in (case.reference.colour, distractor_colour), case.name
        assert case.target_shape not in (case.reference.shape, distractor_shape), case.name


def test_validation_and_test_cases_never_share_a_clip():
    test_seeds = {case.reference.seed for case in measurement_cases(50, "test")}
    validation_seeds = {case.reference.seed for case in measurement_cases(50, "validation")}
    assert not test_seeds & validation_seeds
    assert min(validation_seeds) == VALIDATION_SEED_OFFSET


def test_unknown_split_is_an_error_that_lists_the_splits():
    with pytest.raises(MeasureError, match="validation"):
        measurement_cases(2, "train")


def test_a_perfect_transfer_scores_full_motion_fidelity_zero_path_error_and_kept_look(case, clip):
    scores = score_transfer(_target_on(clip.path, case), clip, case)
    assert scores["motion_fidelity_centroid"] > 0.95
    # Lucas-Kanade loses the inside of a flat shape, so grid MF stays far below 1 even here; it must
    # still rank the copy above a reversed or a still object.
    reversed_scores = score_transfer(_target_on(clip.path[::-1], case), clip, case)
    assert scores["motion_fidelity_grid"] > max(reversed_scores["motion_fidelity_grid"], 0.05)
    assert 0.9 < scores["motion_extent"] < 1.1 and scores["present_every_frame"] == 1.0
    assert scores["path_error_vs_parked"] < 0.2 and scores["background_kept"] == 1.0
    still = np.repeat(clip.path.mean(axis=0, keepdims=True), len(clip.path), axis=0)
    parked = score_transfer(_target_on(still, case), clip, case)
    assert parked["path_error_vs_parked"] == pytest.approx(1.0, abs=0.1)  # the control itself scores 1
    assert scores["path_error"] < 1.0
    assert scores["path_error_reversed"] > scores["path_error"] + 2
    assert scores["appearance_kept"] and scores["reference_colour_share"] == 0.0


def test_a_perfect_transfer_in_a_16_px_world_scores_like_one_in_the_32_px_world(case):
    small = WorldConfig(height=16, width=16, object_size=6)
    clip = render_clip(case.reference, small)
    frames, _ = render_path(case.target_colour, case.target_shape, clip.path, case.reference.background, small)
    scores = score_transfer(frames, clip, case)
    assert scores["motion_fidelity_centroid"] > 0.95
    assert scores["path_error"] < 0.5


def test_the_reversed_path_scores_negative_motion_fidelity(case, clip):
    scores = score_transfer(_target_on(clip.path[::-1], case), clip, case)
    assert scores["motion_fidelity_centroid"] < -0.5
    assert scores["path_error_reversed"] < 1.0


def test_a_still_object_has_no_motion_fidelity_and_sits_at_the_mean_position(case, clip):
    still = np.repeat(clip.path.mean(axis=0, keepdims=True), len(clip.path), axis=0)
    scores = score_transfer(_target_on(still, case), clip, case)
    assert scores["motion_fidelity_centroid"] == 0.0 and scores["motion_fidelity_grid"] == 0.0
    assert scores["path_error_mean_position"] < 1.0


def test_copying_the_reference_colour_counts_as_leaked_appearance(case, clip):
    scores = score_transfer(_target_on(clip.path, case, colour=case.reference.colour), clip, case)
    assert not scores["colour_kept"] and not scores["appearance_kept"]
    assert scores["reference_colour_read"] and scores["reference_colour_share"] > 0.9


def test_uint8_and_pipeline_tensor_frames_score_the_same(case, clip):
    frames = _target_on(clip.path, case)
    as_tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert score_transfer(frames, clip, case)["path_error"] == pytest.approx(
        score_transfer(as_tensor, clip, case)["path_error"], abs=1e-6
    )


def test_ground_truth_pooled_to_the_latent_grid_keeps_the_object_cells(clip):
    pooled = ground_truth_on_grid(clip.masks, (8, 8, 8))
    assert pooled.shape == (8, 8, 8)
    # a 12-px object covers 2 to 3 full 4-px cells per side
    assert all(4 <= frame.sum() <= 16 for frame in pooled)
    assert mask_iou(pooled, pooled) == 1.0
    assert mask_iou(pooled, ~pooled) == 0.0


def test_fbdm_iou_is_read_from_the_last_mask_and_averaged_over_refreshes(clip):
    truth = torch.from_numpy(ground_truth_on_grid(clip.masks, (8, 8, 8)))
    records = [SimpleNamespace(mask=torch.ones_like(truth)), SimpleNamespace(mask=truth)]
    scores = fbdm_scores(records, clip)
    assert scores["fbdm_iou"] == 1.0
    assert scores["fbdm_iou_mean_over_steps"] == pytest.approx((truth.float().mean().item() + 1.0) / 2)


def test_toy_config_scales_threshold_fractions_and_takes_overrides():
    config = toy_lmp_config(20, asm_steps_fraction=0.5, fg_threshold=0.25)
    assert config.num_inference_steps == 20 and config.asm_steps == 10 and config.fg_threshold == 0.25
    assert toy_lmp_config(50).rmtm_steps > toy_lmp_config(10).rmtm_steps


def test_a_model_folders_defaults_replace_the_toy_settings_and_overrides_win(tmp_path):
    from attnkit_lmp.model_defaults import ModelDefaults

    (tmp_path / "lmp_defaults.json").write_text(
        json.dumps({"config": {"fg_threshold": 0.6, "fbdm_steps": 20, "fbdm_layers": [5]}, "call": {"num_inference_steps": 40, "guidance_scale": 6.0}})
    )
    defaults = ModelDefaults.of_folder(tmp_path)
    config = toy_lmp_config(20, defaults=defaults)
    assert (config.fg_threshold, config.fbdm_layers, config.guidance_scale) == (0.6, [5], 6.0)
    assert config.fbdm_steps == 10  # half of the folder's run, as there
    assert config.num_inference_steps == 20
    # Thresholds the file leaves out are the paper's at its 40 steps (LMPConfig.for_steps), kept as fractions.
    assert config.rmtm_steps == round(LMPConfig.for_steps(40).rmtm_steps / 2)
    overridden = toy_lmp_config(20, defaults=defaults, fg_threshold=0.2, fbdm_steps_fraction=1.0)
    assert (overridden.fg_threshold, overridden.fbdm_steps) == (0.2, 20)
    assert toy_lmp_config(20).fg_threshold != 0.6  # without the folder: the toy settings


def test_toy_config_names_layer_sets_relative_to_the_models_depth():
    # The first half of the 6-layer toy architecture, and of a 4-layer checkpoint.
    assert toy_lmp_config(10, fbdm_layers="first_half").fbdm_layers == [0, 1, 2]
    assert toy_lmp_config(10, num_layers=4, fbdm_layers="first_half").fbdm_layers == [0, 1]
    assert toy_lmp_config(10, num_layers=4, fbdm_layers="last").fbdm_layers == [3]
    assert toy_lmp_config(10, fbdm_layers=None).fbdm_layers is None


def test_toy_config_takes_geometry_and_depth_from_the_toy_model():
    # A Wan pipeline's own call defaults are a real checkpoint's (81 frames, 480 x 832, 512 tokens).
    from attnkit_lmp.toy.model import ToyModelConfig

    model = ToyModelConfig(architecture="wan", num_frames=9, num_layers=4, text_length=8)
    config = toy_lmp_config(10, model=model, fbdm_layers="last_half")
    assert (config.num_frames, config.height, config.width, config.max_sequence_length) == (9, 32, 32, 8)
    assert config.fbdm_layers == [2, 3]
    assert toy_lmp_config(10).num_frames is None  # without a model: the pipeline's own defaults


def test_overrides_parse_as_json_and_bad_ones_name_the_form():
    assert parse_overrides(["rmtm_layers=[1, 2]", "asm_eta=50", "rmtm_cfg_rows=cond"]) == {
        "rmtm_layers": [1, 2],
        "asm_eta": 50,
        "rmtm_cfg_rows": "cond",
    }
    with pytest.raises(MeasureError, match="NAME=VALUE"):
        parse_overrides(["fg_threshold"])


def test_goals_need_lmp_above_baseline_and_the_papers_ablation_order():
    summary = {
        "baseline": {"motion_fidelity_centroid": 0.2, "appearance_kept": 1.0},
        "lmp": {"motion_fidelity_centroid": 0.9, "appearance_kept": 0.95},
        "lmp_no_asm": {"motion_fidelity_centroid": 0.8, "appearance_kept": 0.9},
        "lmp_no_fbdm": {"motion_fidelity_centroid": 0.85, "appearance_kept": 0.9},
    }
    goals = check_goals(summary)
    assert goals["lmp_mf_at_least_0.90"] and goals["baseline_mf_at_most_0.40"]
    assert not goals["ablation_order_lmp>no_asm>no_fbdm"]


def test_named_layer_sets_follow_the_model_depth_and_unknown_names_are_errors():
    from attnkit_lmp.toy.measure import layer_set, resolve_layer_sets

    assert layer_set("last_half", 6) == [3, 4, 5] and layer_set("first_half", 4) == [0, 1]
    assert layer_set("last", 6) == [5] and layer_set("all", 6) is None and layer_set([1], 6) == [1]
    assert resolve_layer_sets({"fbdm_layers": "last", "fg_threshold": 0.3}, 4) == {
        "fbdm_layers": [3],
        "fg_threshold": 0.3,
    }
    with pytest.raises(MeasureError, match="last_half"):
        layer_set("middle", 6)


def test_v2_cases_cover_backgrounds_and_distractors_and_repeat_each_clip_over_noise_seeds():
    from attnkit_lmp.toy.model import ToyModelConfig

    world = ToyModelConfig().world
    cases = measurement_cases(20, "test", world=world, noise_seeds=3)
    assert len(cases) == 60 and len({case.name for case in cases}) == 60
    references = {case.reference for case in cases}
    assert len(references) == 20
    assert len({spec.background for spec in references}) >= 4
    assert any(spec.distractor is not None for spec in references)
    assert all("and" not in case.prompt for case in cases)  # targets name no distractor
    assert {case.noise_seed for case in cases if case.reference == cases[0].reference} == {
        cases[0].noise_seed + repeat * 1_000_000 for repeat in range(3)
    }


def test_following_the_distractor_is_scored_as_such():
    from attnkit_lmp.toy.model import ToyModelConfig

    world = ToyModelConfig().world
    case = next(case for case in measurement_cases(40, "test", world=world) if case.reference.distractor)
    clip = render_clip(case.reference, world)
    frames, _ = render_path(
        case.target_colour, case.target_shape, clip.distractor_centroids, case.reference.background, world
    )
    scores = score_transfer(frames, clip, case)
    # Nearer the distractor's path than the subject's by far; not exactly on it, since the path places the
    # shape's box and a triangle's centroid sits a sixth of the box below the box's centre.
    assert scores["follows_distractor"] == 1.0
    assert scores["path_error_to_distractor"] < min(2.5, scores["path_error"] / 3), scores
    own = score_transfer(_target_on(clip.path, case), clip, case)
    assert own["follows_distractor"] == 0.0


def test_the_summary_reports_the_spread_over_noise_repeats():
    from attnkit_lmp.toy.measure import summarise

    records = [
        {"variant": "lmp", "noise_repeat": repeat, "motion_fidelity_centroid": value, "motion_extent": extent}
        for repeat, value, extent in ((0, 0.5, 1.0), (1, 0.7, 0.2), (2, 0.9, 0.9))
    ]
    summary = summarise(records)["lmp"]
    assert summary["noise_repeats"] == 3
    assert summary["motion_fidelity_centroid"] == pytest.approx(0.7)
    assert summary["motion_fidelity_centroid_seed_std"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
    assert summary["motion_extent"] == 0.9  # a ratio is summarised by its median


def test_the_summary_reports_look_kept_per_target_shape():
    from attnkit_lmp.toy.measure import summarise

    kept = {"square": [False, False], "circle": [True, False], "triangle": [True, True]}
    records = [
        {"variant": "lmp", "target_shape": shape, "appearance_kept": value}
        for shape, values in kept.items()
        for value in values
    ]
    summary = summarise(records)["lmp"]
    assert summary["appearance_kept"] == pytest.approx(0.5)
    assert summary["appearance_kept_square_targets"] == 0.0
    assert summary["appearance_kept_circle_targets"] == 0.5
    assert summary["appearance_kept_triangle_targets"] == 1.0


def test_the_toy_variants_are_the_methods_table_under_underscore_names(case, clip, monkeypatch):
    from attnkit_lmp.methods import DEFAULT_METHODS, METHODS
    from attnkit_lmp.toy.measure import VARIANTS, variants

    assert VARIANTS == ("baseline", "lmp", "lmp_no_fbdm", "lmp_no_asm")
    assert [name.replace("_", "-") for name in VARIANTS] == list(DEFAULT_METHODS)
    ran = {}
    monkeypatch.setattr(variants, "run_baseline", lambda *args, **kwargs: ran.setdefault("baseline", "plain"))
    monkeypatch.setattr(variants, "run_lmp", lambda pipe, clip, case, config, image=None: config)
    base = toy_lmp_config(4)
    for method in METHODS.values():
        result = variants.run_variant(None, clip, case, method.variant, base)
        if method.kind == "plain":
            assert result == "plain"
            continue
        changed = {name: getattr(result, name) for name in method.config_changes}
        assert changed == method.config_changes
        assert result.to_dict() == {**base.to_dict(), **method.config_changes}
