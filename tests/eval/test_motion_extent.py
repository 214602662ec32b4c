"""Motion extent: the generated centroid path's length over the reference's, per clip, NaN-safe."""

import numpy as np
import pytest

from attnkit_lmp.toy.scores import motion_extent


def path(steps, start=(5.0, 5.0)):
    steps = np.asarray(steps, dtype=np.float64)
    return np.asarray(start) + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def test_the_same_path_anywhere_has_extent_one():
    reference = path([[2, 0], [0, 3], [-1, 1]])
    assert motion_extent(path([[2, 0], [0, 3], [-1, 1]], start=(20, 9)), reference) == pytest.approx(1.0)


def test_extent_is_the_ratio_of_path_lengths_whatever_the_direction():
    reference = path([[3, 4]] * 4)  # 20 px
    assert motion_extent(path([[1.8, 2.4]] * 4), reference) == pytest.approx(0.6)
    assert motion_extent(path([[-3, -4]] * 4), reference) == pytest.approx(1.0)  # MF's business, not extent's
    assert motion_extent(path([[6, 8]] * 4), reference) == pytest.approx(2.0)


def test_path_length_is_summed_step_by_step_not_end_to_end():
    there_and_back = path([[5, 0], [-5, 0]])
    assert motion_extent(there_and_back, path([[0, 5], [0, 5]])) == pytest.approx(1.0)


def test_steps_with_a_missing_position_in_either_path_are_left_out_of_both():
    reference = path([[1, 0], [1, 0], [1, 0], [1, 0]])
    generated = path([[2, 0], [9, 9], [2, 0], [2, 0]])
    generated[2] = np.nan  # no object in frame 2: steps 1 and 2 are not measured
    assert motion_extent(generated, reference) == pytest.approx(2.0)
    reference_missing = reference.copy()
    reference_missing[2] = np.nan
    assert motion_extent(path([[2, 0]] * 4), reference_missing) == pytest.approx(2.0)


def test_extent_is_nan_without_a_step_to_compare_or_a_reference_that_moves():
    reference = path([[1, 0]] * 3)
    assert np.isnan(motion_extent(np.full((4, 2), np.nan), reference))
    assert np.isnan(motion_extent(path([[1, 0]] * 3), path([[0, 0]] * 3)))


def test_paths_of_different_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="same number of frames"):
        motion_extent(path([[1, 0]] * 3), path([[1, 0]] * 4))
