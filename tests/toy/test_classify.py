"""The analytic classifier reads rendered clips correctly and judges paths as the docs define."""

import numpy as np
import pytest

from attnkit_lmp.toy.classify import COHERENCE_MAX_RATIO, colour_fractions, path_report, read_frames
from attnkit_lmp.toy.world import COLOURS, SHAPES, ClipSpec, WorldConfig, random_clip_spec, render_clip


@pytest.mark.parametrize("background", ["black", "white"])
def test_colour_and_shape_of_every_rendered_subject_are_recognised(background):
    for index, colour in enumerate(COLOURS):
        for shape in SHAPES:
            clip = render_clip(ClipSpec(colour, shape, "curved", seed=index, background=background))
            reading = read_frames(clip.frames)
            assert (reading.colour, reading.shape) == (colour, shape)


def test_float_frames_in_unit_range_read_like_uint8():
    clip = render_clip(ClipSpec("blue", "triangle", "straight", seed=2))
    reading = read_frames(clip.frames.astype(np.float32) / 255)
    assert (reading.colour, reading.shape) == ("blue", "triangle")


def test_extracted_centroids_match_ground_truth_to_a_tenth_of_a_pixel():
    for seed in range(10):
        clip = render_clip(random_clip_spec(seed))
        assert np.abs(read_frames(clip.frames).centroids - clip.centroids).max() < 0.1


def test_empty_frames_have_no_object_and_no_colour():
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    reading = read_frames(frames)
    assert np.isnan(reading.centroids).all()
    assert reading.colour is None and reading.shape is None


def test_a_noise_blob_is_not_a_shape():
    rng = np.random.default_rng(0)
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    frames[:, 8:24, 8:24] = (230, 40, 40) * (rng.random((4, 16, 16, 1)) > 0.5)
    assert read_frames(frames).shape is None


def test_training_trajectories_are_coherent_and_random_jumps_are_not():
    for seed in range(60):
        clip = render_clip(random_clip_spec(seed, "train"))
        assert path_report(clip.centroids).coherent, clip.spec
    rng = np.random.default_rng(0)
    jumps = [path_report(rng.uniform(8, 24, size=(8, 2))).coherence_ratio for _ in range(50)]
    assert np.median(jumps) > 2 * COHERENCE_MAX_RATIO


def test_a_still_object_does_not_count_as_moving():
    report = path_report(np.full((8, 2), 16.0))
    assert not report.moves and not report.coherent


def test_a_missing_frame_makes_the_path_incoherent():
    centroids = np.stack([np.linspace(8, 24, 8), np.full(8, 16.0)], axis=1)
    centroids[3] = np.nan
    assert not path_report(centroids).coherent


def test_colour_fractions_split_two_objects_by_their_areas():
    red = render_clip(ClipSpec("red", "square", "straight", seed=0))
    blue = render_clip(ClipSpec("blue", "triangle", "straight", seed=1))
    left_red_right_blue = np.concatenate([red.frames[:, :, :16], blue.frames[:, :, 16:]], axis=2)
    fractions = colour_fractions(left_red_right_blue)
    red_area = (red.masks[:, :, :16]).sum()
    blue_area = (blue.masks[:, :, 16:]).sum()
    assert fractions["red"] == pytest.approx(red_area / (red_area + blue_area), abs=0.1)
    assert fractions["green"] == 0 and fractions["yellow"] == 0


def test_small_world_objects_are_found_in_every_frame():
    small = WorldConfig(height=16, width=16, object_size=6)
    for seed in range(40):
        clip = render_clip(random_clip_spec(seed, "train"), small)
        reading = read_frames(clip.frames)
        assert np.isfinite(reading.centroids).all(), clip.spec
        assert reading.colour == clip.spec.colour
