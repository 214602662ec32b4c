"""Motion fidelity: the DMT formula, steps without direction earning nothing, DMT's own variant, memory bound."""

import time

import numpy as np
import pytest

from attnkit_lmp.eval.motion_fidelity import (
    dmt_motion_fidelity,
    motion_fidelity,
    similarity_matrix,
    unit_displacements,
)


def tracks_from_steps(steps, start=(10.0, 10.0)):
    """(1, T, 2) tracklet starting at ``start`` and moving by ``steps`` (T - 1, 2)."""
    steps = np.asarray(steps, dtype=np.float64)
    return (np.asarray(start) + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)]))[None]


def naive_motion_fidelity(generated, reference):
    """The formula written out loop by loop, for tracks without any zero displacement."""
    scores = []
    for gen in generated:
        best = -np.inf
        for ref in reference:
            cosines = []
            for t in range(len(gen) - 1):
                u = gen[t + 1] - gen[t]
                v = ref[t + 1] - ref[t]
                cosines.append(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
            best = max(best, np.mean(cosines))
        scores.append(best)
    return float(np.mean(scores))


def test_identical_motion_scores_one():
    tracks = tracks_from_steps([[1, 0], [1, 1], [0, 2], [-1, 1]])
    assert motion_fidelity(tracks, tracks).score == pytest.approx(1.0)


def test_reversed_motion_scores_minus_one():
    steps = np.array([[1, 0], [1, 1], [0, 2], [-1, 1]], dtype=float)
    assert motion_fidelity(tracks_from_steps(steps), tracks_from_steps(-steps)).score == pytest.approx(-1.0)


def test_orthogonal_motion_scores_zero():
    steps = np.array([[1, 0], [1, 1], [0, 2], [-1, 1]], dtype=float)
    rotated = steps[:, ::-1] * [1, -1]
    assert motion_fidelity(tracks_from_steps(steps), tracks_from_steps(rotated)).score == pytest.approx(0.0)


def test_speed_does_not_matter_only_direction():
    steps = np.array([[1, 0], [0, 1], [1, 1]], dtype=float)
    scaled = steps * np.array([[3.0], [0.7], [5.0]])
    assert motion_fidelity(tracks_from_steps(steps), tracks_from_steps(scaled)).score == pytest.approx(1.0)


def test_matches_the_formula_written_out_on_random_tracks():
    rng = np.random.default_rng(0)
    generated = rng.normal(scale=5, size=(7, 6, 2)).cumsum(axis=1)
    reference = rng.normal(scale=5, size=(9, 6, 2)).cumsum(axis=1)
    result = motion_fidelity(generated, reference, min_displacement=1e-9)
    assert result.score == pytest.approx(naive_motion_fidelity(generated, reference), abs=1e-12)


def test_takes_the_best_reference_tracklet_for_each_generated_one():
    right = tracks_from_steps([[1, 0]] * 4)
    up = tracks_from_steps([[0, -1]] * 4)
    left = tracks_from_steps([[-1, 0]] * 4)
    result = motion_fidelity(np.concatenate([right, up]), np.concatenate([left, up, right]))
    assert result.best_match_scores == pytest.approx([1.0, 1.0])


def test_still_steps_contribute_cosine_zero_but_count_in_the_time_mean():
    # Moves on 2 of 4 steps and stands still on the others: against itself S = 2 / 4.
    tracks = tracks_from_steps([[1, 0], [0, 0], [0, 1], [0.1, 0]])
    assert motion_fidelity(tracks, tracks, min_displacement=0.5).score == pytest.approx(0.5)


def test_unit_displacements_are_unit_or_zero_never_nan():
    tracks = tracks_from_steps([[3, 4], [0, 0], [1e-9, 0]])
    directions = unit_displacements(tracks, min_displacement=0.5)
    assert np.isfinite(directions).all()
    assert directions[0, 0] == pytest.approx([0.6, 0.8])
    assert (directions[0, 1:] == 0).all()
    assert (unit_displacements(tracks, min_displacement=0.0)[0, 1] == 0).all()


def rigid_motion_on_static_background(num_moving, num_static, num_frames, jitter, seed=0):
    """Grid-like tracks: ``num_moving`` points move together, the rest stand still; all jitter like a tracker."""
    rng = np.random.default_rng(seed)
    tracks = np.repeat(rng.uniform(0, 64, size=(num_moving + num_static, 1, 2)), num_frames, axis=1)
    tracks[:num_moving] += np.arange(num_frames)[:, None] * np.array([1.5, 0.5])
    return tracks + rng.normal(scale=jitter, size=tracks.shape)


def test_a_static_background_earns_nothing_so_a_copy_scores_the_moving_fraction():
    # A quarter of the points move; the background's sub-pixel jitter is not motion.
    for num_points, num_frames in [(64, 16), (256, 49)]:
        tracks = rigid_motion_on_static_background(num_points // 4, num_points - num_points // 4, num_frames, 0.05)
        result = motion_fidelity(tracks, tracks)
        assert result.score == pytest.approx(0.25)
        assert (result.num_generated_moving, result.num_generated) == (num_points // 4, num_points)


def test_static_generated_tracklets_count_in_the_mean_and_earn_zero():
    moving = tracks_from_steps([[1, 0]] * 4)
    static = tracks_from_steps([[0, 0]] * 4)
    # Freezing half of the generated video where the reference moves halves the score.
    result = motion_fidelity(np.concatenate([moving, static]), moving)
    assert result.score == pytest.approx(0.5)
    assert result.best_match_scores == pytest.approx([1.0, 0.0])


def test_static_reference_tracklets_are_candidates_that_offer_zero():
    moving = tracks_from_steps([[1, 0]] * 4)
    static = tracks_from_steps([[0, 0]] * 4)
    reversed_motion = tracks_from_steps([[-1, 0]] * 4)
    # Moving where the reference's background stands still is unrelated motion (0), not its reverse.
    assert motion_fidelity(moving, np.concatenate([reversed_motion, static])).score == pytest.approx(0.0)
    assert motion_fidelity(moving, reversed_motion).score == pytest.approx(-1.0)


def test_no_motion_on_either_side_scores_zero_with_counts():
    static = tracks_from_steps([[0, 0]] * 4)
    moving = tracks_from_steps([[1, 0]] * 4)
    for generated, reference in [(static, moving), (moving, static), (static, static)]:
        result = motion_fidelity(generated, reference)
        assert result.score == 0.0
        assert result.best_match_scores.shape == (1,)
    assert motion_fidelity(static, moving).num_generated_moving == 0
    assert motion_fidelity(moving, static).num_reference_moving == 0


def test_a_lost_frame_costs_the_two_steps_touching_it_not_the_clip():
    tracks = tracks_from_steps([[1, 0], [1, 1], [0, 2], [-1, 1], [1, 0]])
    visible = np.ones((1, 6), dtype=bool)
    visible[0, 2] = False
    result = motion_fidelity(tracks, tracks, generated_visible=visible)
    assert result.score == pytest.approx(3 / 5)


def test_tracklets_lost_early_stay_in_the_mean_and_earn_only_their_tracked_steps():
    reference = tracks_from_steps([[1, 0]] * 4)
    generated = np.concatenate([reference, reference])
    visible = np.ones((2, 5), dtype=bool)
    visible[1, 2:] = False  # the tracker lost the second point after two frames
    result = motion_fidelity(generated, reference, generated_visible=visible)
    assert result.best_match_scores == pytest.approx([1.0, 0.25])
    assert result.score == pytest.approx(0.625)


def test_reference_tracklets_lost_partway_are_no_candidates():
    # Reference: right for two steps, then lost. Generated: right for two steps, then elsewhere.
    prefix_match = tracks_from_steps([[1, 0], [1, 0], [0, 1], [0, -1]])
    lost_after_two_steps = tracks_from_steps([[1, 0], [1, 0], [0, 0], [0, 0]])
    up = tracks_from_steps([[0, -1]] * 4)
    reference = np.concatenate([lost_after_two_steps, up])
    reference_visible = np.array([[True, True, True, False, False], [True] * 5])
    # Without visibility the lost tracklet's frozen part reads as standing still and offers S = 1/2.
    assert motion_fidelity(prefix_match, reference).score == pytest.approx(0.5)
    result = motion_fidelity(prefix_match, reference, reference_visible=reference_visible)
    assert result.score == pytest.approx(0.0)
    assert (result.num_reference_candidates, result.num_reference) == (1, 2)


def test_no_reference_candidate_left_scores_zero():
    moving = tracks_from_steps([[1, 0]] * 4)
    result = motion_fidelity(moving, moving, reference_visible=np.array([[True, True, False, True, True]]))
    assert result.score == 0.0 and result.num_reference_candidates == 0


def naive_dmt_score(generated, reference):
    """DMT's score written out loop by loop: every step normalised, the same-index pair excluded."""
    scores = []
    for n, gen in enumerate(generated):
        best = -np.inf
        for m, ref in enumerate(reference):
            cosines = []
            for t in range(len(gen) - 1):
                u = gen[t + 1] - gen[t]
                v = ref[t + 1] - ref[t]
                cosines.append(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
            best = max(best, np.mean(cosines) - (1.0 if n == m else 0.0))
        scores.append(best)
    return float(np.mean(scores))


def test_dmt_variant_matches_dmts_formula_written_out():
    tracks = rigid_motion_on_static_background(3, 6, 7, jitter=0.05, seed=4)
    other = rigid_motion_on_static_background(3, 6, 7, jitter=0.05, seed=5)
    for generated, reference in [(tracks, tracks), (other, tracks)]:
        assert dmt_motion_fidelity(generated, reference, chunk_size=4) == pytest.approx(
            naive_dmt_score(generated, reference), abs=1e-12
        )


def test_dmt_variant_credits_jitter_by_chance_and_moves_with_grid_size_and_clip_length():
    dmt_scores = []
    for num_points, num_frames in [(64, 16), (256, 49)]:
        tracks = rigid_motion_on_static_background(num_points // 4, num_points - num_points // 4, num_frames, 0.05)
        dmt_scores.append(dmt_motion_fidelity(tracks, tracks))
        assert motion_fidelity(tracks, tracks).score == pytest.approx(0.25)
    # The static three quarters earn the best chance agreement of their jitter with some other point's.
    assert all(0.4 < score < 0.8 for score in dmt_scores)
    assert abs(dmt_scores[0] - dmt_scores[1]) > 0.05


def test_dmt_variant_excludes_the_same_index_so_one_tracklet_cannot_match_itself():
    tracks = tracks_from_steps([[1, 0]] * 4)
    assert motion_fidelity(tracks, tracks).score == pytest.approx(1.0)
    assert dmt_motion_fidelity(tracks, tracks) == pytest.approx(0.0)


def test_dmt_variant_stays_finite_on_exactly_static_points_and_needs_equal_grids():
    tracks = np.concatenate([tracks_from_steps([[1, 0]] * 4), tracks_from_steps([[0, 0]] * 4)])
    assert np.isfinite(dmt_motion_fidelity(tracks, tracks))
    with pytest.raises(ValueError, match="as many generated tracklets as reference ones"):
        dmt_motion_fidelity(tracks, tracks[:1])


def test_chunked_reduction_equals_the_full_matrix():
    rng = np.random.default_rng(1)
    generated = rng.normal(size=(50, 8, 2)).cumsum(axis=1) * 3
    reference = rng.normal(size=(40, 8, 2)).cumsum(axis=1) * 3
    full = similarity_matrix(unit_displacements(generated), unit_displacements(reference)).max(axis=1)
    for chunk_size in (1, 7, 50, 1000):
        result = motion_fidelity(generated, reference, chunk_size=chunk_size)
        np.testing.assert_allclose(result.best_match_scores, full, atol=1e-12)


def test_similarity_is_within_minus_one_and_one():
    rng = np.random.default_rng(2)
    directions = unit_displacements(rng.normal(size=(20, 10, 2)).cumsum(axis=1))
    similarity = similarity_matrix(directions, directions)
    assert similarity.min() >= -1 - 1e-12 and similarity.max() <= 1 + 1e-12


def test_a_55_by_55_grid_over_49_frames_is_fast_and_bounded():
    rng = np.random.default_rng(3)
    tracks = (rng.normal(scale=10, size=(55 * 55, 49, 2)).cumsum(axis=1)).astype(np.float32)
    start = time.perf_counter()
    result = motion_fidelity(tracks, tracks, chunk_size=512, min_displacement=0.0)
    elapsed = time.perf_counter() - start
    assert result.score == pytest.approx(1.0)
    assert elapsed < 10, f"MF on 3025 x 3025 tracklets took {elapsed:.1f} s"


def test_frame_count_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="5 frames, reference tracks 4"):
        motion_fidelity(tracks_from_steps([[1, 0]] * 4), tracks_from_steps([[1, 0]] * 3))


def test_empty_tracks_are_a_clear_error():
    with pytest.raises(ValueError, match="holds no tracklet"):
        motion_fidelity(np.zeros((0, 5, 2)), tracks_from_steps([[1, 0]] * 4))


def test_cotracker_layout_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"expected \(num_tracklets, num_frames, 2\)"):
        motion_fidelity(np.zeros((1, 5, 3, 2)), np.zeros((1, 5, 3, 2)))


def test_visibility_of_the_wrong_shape_is_a_clear_error():
    tracks = tracks_from_steps([[1, 0]] * 4)
    with pytest.raises(ValueError, match="generated_visible has shape"):
        motion_fidelity(tracks, tracks, generated_visible=np.ones((5, 1), dtype=bool))


def test_nan_positions_are_rejected():
    tracks = tracks_from_steps([[1, 0]] * 4)
    tracks[0, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        motion_fidelity(tracks, tracks)


def test_result_serialises_to_plain_numbers():
    tracks = tracks_from_steps([[1, 0]] * 4)
    record = motion_fidelity(tracks, tracks).to_dict()
    assert record["motion_fidelity"] == pytest.approx(1.0)
    assert all(isinstance(value, (int, float)) for value in record.values())
