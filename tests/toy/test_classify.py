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


def _with_stray_line(clip, length=5):
    """The clip's frames with a one-pixel line of the object's colour running right from its box, as the
    trained models draw beside their shapes: the bounding box grows, the shape does not change."""
    frames = clip.frames.copy()
    colour = np.array(COLOURS[clip.spec.colour], dtype=np.uint8)
    for frame, mask in zip(frames, clip.masks):
        rows, cols = np.nonzero(mask > 0.5)
        row, start = int(np.median(rows)), cols.max() + 1
        frame[row, start : start + length] = colour
    return frames


def test_a_square_with_a_stray_line_beside_it_is_still_a_square():
    for seed in range(6):
        clip = render_clip(ClipSpec("green", "square", "straight", seed=seed))
        frames = _with_stray_line(clip)
        reading = read_frames(frames)
        box_fill = reading.areas.mean() / (12 * (12 + 5))
        assert box_fill < 0.8  # by its bounding box alone it would fill no more than a circle does
        assert reading.shape == "square", reading.shape_features


def test_every_rendered_shape_is_read_at_any_sub_pixel_offset():
    # A square at a half-pixel offset loses a row and a column of its thresholded mask (~0.84 of its box).
    world = WorldConfig()
    for seed in range(80):
        spec = random_clip_spec(seed, "heldout")
        assert read_frames(render_clip(spec, world).frames).shape == spec.shape, spec


def test_the_object_size_of_the_world_decides_how_full_its_box_is():
    large = WorldConfig(object_size=16)
    clip = render_clip(ClipSpec("blue", "circle", "straight", seed=3), large)
    assert read_frames(clip.frames, object_size=16).shape == "circle"
    # Judged against the toy worlds' default 12 px box, a 16 px disc covers all of it, as a square would.
    assert read_frames(clip.frames).shape == "square"
