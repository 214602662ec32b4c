"""The toy world renders deterministic clips, keeps objects in frame and rejects settings it cannot render."""

import numpy as np
import pytest

from attnkit_lmp.toy.model import ToyModelConfig
from attnkit_lmp.toy.world import (
    HELDOUT_TRAJECTORIES,
    TRAIN_TRAJECTORIES,
    TRAJECTORIES,
    ClipSpec,
    WorldConfig,
    background_mix,
    prompt_for,
    random_clip_spec,
    render_clip,
    substitute_background,
    substitute_subject,
)


def test_same_spec_renders_identical_frames_masks_and_centroids():
    spec = ClipSpec("red", "triangle", "bouncing", seed=7)
    first, second = render_clip(spec), render_clip(spec)
    assert np.array_equal(first.frames, second.frames)
    assert np.array_equal(first.masks, second.masks)
    assert np.array_equal(first.centroids, second.centroids)


def test_different_seeds_give_different_paths():
    first = render_clip(ClipSpec("red", "square", "straight", seed=1))
    second = render_clip(ClipSpec("red", "square", "straight", seed=2))
    assert not np.allclose(first.centroids, second.centroids)


def test_train_and_heldout_streams_differ_for_the_same_seed():
    train = render_clip(ClipSpec("red", "square", "straight", seed=3, split="train"))
    heldout = render_clip(ClipSpec("red", "square", "straight", seed=3, split="heldout"))
    assert not np.allclose(train.centroids, heldout.centroids)


def test_random_specs_use_only_their_split_trajectories():
    assert {random_clip_spec(seed, "train").trajectory for seed in range(200)} == set(TRAIN_TRAJECTORIES)
    assert {random_clip_spec(seed, "heldout").trajectory for seed in range(50)} == set(HELDOUT_TRAJECTORIES)
    assert not set(TRAIN_TRAJECTORIES) & set(HELDOUT_TRAJECTORIES)


@pytest.mark.parametrize("trajectory", TRAJECTORIES)
def test_every_trajectory_keeps_the_whole_object_inside_and_moves(trajectory):
    for seed in range(5):
        clip = render_clip(ClipSpec("blue", "circle", trajectory, seed=seed))
        assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
        assert clip.masks.shape == (8, 32, 32)
        border = np.concatenate(
            [clip.masks[:, 0], clip.masks[:, -1], clip.masks[:, :, 0], clip.masks[:, :, -1]]
        )
        assert not border.any()
        assert clip.masks.sum(axis=(1, 2)).min() > 50
        displacement = np.linalg.norm(clip.centroids[-1] - clip.centroids[0])
        assert displacement > 3 or trajectory == "bouncing"


def test_mask_and_frame_agree_on_where_the_object_is():
    clip = render_clip(ClipSpec("green", "square", "curved", seed=4, background="white"))
    object_pixels = clip.frames[clip.masks].astype(int)
    background_pixels = clip.frames[~clip.masks].astype(int)
    assert np.abs(object_pixels - (40, 200, 60)).max(axis=1).mean() < 60
    assert (background_pixels.min(axis=1) > 120).mean() > 0.97


def test_prompt_names_colour_shape_and_non_default_background():
    assert prompt_for("red", "square") == "a red square"
    assert prompt_for("red", "square", "white") == "a red square on a white background"
    assert ClipSpec("yellow", "circle", "straight").prompt == "a yellow circle"


@pytest.mark.parametrize(
    "config, message",
    [
        (WorldConfig(num_frames=0), "num_frames"),
        (WorldConfig(num_frames=1), "at least 2 frames"),
        (WorldConfig(object_size=40), "does not fit"),
        (WorldConfig(height=0), "height"),
    ],
)
def test_settings_that_cannot_render_raise_a_clear_error(config, message):
    with pytest.raises(ValueError, match=message):
        render_clip(ClipSpec("red", "square", "straight"), config)


@pytest.mark.parametrize(
    "spec, message",
    [
        (ClipSpec("purple", "square", "straight"), "unknown colour 'purple'"),
        (ClipSpec("red", "hexagon", "straight"), "unknown shape"),
        (ClipSpec("red", "square", "teleport"), "unknown trajectory"),
        (ClipSpec("red", "square", "straight", seed=-1), "seed"),
    ],
)
def test_unknown_spec_values_raise_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        render_clip(spec)


def test_path_that_cannot_fit_raises_instead_of_looping():
    with pytest.raises(ValueError, match="could not fit"):
        render_clip(ClipSpec("red", "square", "straight"), WorldConfig(height=16, width=16, object_size=13))


def test_substitute_subject_changes_colour_and_shape_and_is_seeded():
    for seed in range(20):
        spec = random_clip_spec(seed, "heldout")
        colour, shape = substitute_subject(spec)
        assert colour != spec.colour and shape != spec.shape
        assert substitute_subject(spec) == (colour, shape)
        assert substitute_background(spec) != spec.background


def test_a_substitute_subject_never_takes_the_distractors_look():
    world = ToyModelConfig().world
    for seed in range(30):
        spec = random_clip_spec(seed, "heldout", background_mix(world, 0.2), distractor_probability=1.0, world=world)
        if spec.distractor is None:
            continue
        colour, shape = substitute_subject(spec)
        assert colour not in (spec.colour, spec.distractor[0]) and shape not in (spec.shape, spec.distractor[1])


@pytest.mark.parametrize("trajectory", TRAJECTORIES)
def test_motion_scales_with_the_frame(trajectory):
    small = WorldConfig(height=16, width=16, object_size=6)
    full_speeds = np.linalg.norm(np.diff(render_clip(ClipSpec("red", "square", trajectory, seed=5)).path, axis=0), axis=1)
    small_path = render_clip(ClipSpec("red", "square", trajectory, seed=5), small).path
    small_speeds = np.linalg.norm(np.diff(small_path, axis=0), axis=1)
    # Same random draws, half the frame: half the distance per frame (bouncing folds at other walls).
    if trajectory != "bouncing":
        np.testing.assert_allclose(small_speeds, full_speeds / 2, atol=1e-9)
    assert 0 < np.median(small_speeds) <= 3.5 / 2
    assert np.all((small_path >= small.margin - 1e-9) & (small_path <= 16 - small.margin + 1e-9))
