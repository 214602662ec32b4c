"""The toy world's checks the sweep adds: centroid MF, path error, appearance kept, object present."""

from __future__ import annotations

import numpy as np
import pytest

from attnkit_lmp.toy.scores import reference_centroids, subject_appearance, toy_world_metrics
from attnkit_lmp.toy.world import ClipSpec, render_clip


@pytest.fixture(scope="module")
def clip():
    return render_clip(ClipSpec("red", "square", "wave", seed=3, split="heldout"))


def test_a_clip_against_itself_follows_the_path_with_its_own_look(clip):
    scores = toy_world_metrics(clip.frames, reference_centroids(clip.frames), "red square")
    assert scores["path_error"] == pytest.approx(0.0, abs=1e-9)
    assert scores["centroid_mf"] == pytest.approx(1.0)
    assert scores["appearance_kept"] == 1.0 and scores["object_present"] == 1.0


def test_the_reversed_clip_moves_against_the_reference(clip):
    scores = toy_world_metrics(clip.frames[::-1].copy(), reference_centroids(clip.frames), "red square")
    assert scores["centroid_mf"] < -0.9 and scores["path_error"] > 1.0


def test_appearance_is_judged_against_the_target_subject(clip):
    assert (
        toy_world_metrics(clip.frames, reference_centroids(clip.frames), "blue circle")["appearance_kept"]
        == 0.0
    )
    assert subject_appearance("a Blue circle") == ("blue", "circle")


def test_an_empty_video_has_no_path_and_scores_zero_motion(clip):
    empty = np.zeros_like(clip.frames)
    scores = toy_world_metrics(empty, reference_centroids(clip.frames), "red square")
    assert np.isnan(scores["path_error"]) and scores["object_present"] == 0.0
    assert scores["centroid_mf"] == 0.0 and scores["appearance_kept"] == 0.0


def test_one_faint_frame_costs_the_steps_touching_it_not_the_clip(clip):
    faint = clip.frames.copy()
    faint[3] = 0  # the object vanished from one of the 8 frames
    scores = toy_world_metrics(faint, reference_centroids(clip.frames), "red square")
    assert scores["centroid_mf"] == pytest.approx(5 / 7)
    assert scores["object_present"] == pytest.approx(7 / 8)


def test_a_copy_covers_the_reference_path_and_a_still_object_none_of_it(clip):
    reference = reference_centroids(clip.frames)
    assert toy_world_metrics(clip.frames, reference, "red square")["motion_extent"] == pytest.approx(1.0)
    still = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    assert toy_world_metrics(still, reference, "red square")["motion_extent"] == 0.0


def test_the_sweeps_toy_checks_are_the_toy_scores_and_the_reports_toy_table(clip):
    from attnkit_lmp.eval.report import TOY_METRICS
    from attnkit_lmp.toy.scores import TOY_METRIC_NAMES, ToyWorldMetrics

    metrics = ToyWorldMetrics()
    scores = metrics.score(clip.frames, metrics.reference(clip.frames), "red square")
    assert tuple(scores) == TOY_METRIC_NAMES
    assert {column.key for column in TOY_METRICS} == set(TOY_METRIC_NAMES)
