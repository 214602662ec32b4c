"""The second toy world: textured backgrounds named in the prompt, moving distractors kept apart from the
subject, a description a third party can render from, and a classifier that reads all of it."""

import numpy as np
import pytest

from attnkit_lmp.toy.classify import read_frames
from attnkit_lmp.toy.model import ToyModelConfig
from attnkit_lmp.toy.world import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    ClipSpec,
    WorldConfig,
    background_mix,
    random_clip_spec,
    render_clip,
    render_path,
    world_description,
)

WORLD = ToyModelConfig().world


@pytest.mark.parametrize("shape", SHAPES)
def test_the_default_model_world_has_an_8x8_token_grid_and_objects_on_at_least_six_tokens(shape):
    model = ToyModelConfig()
    assert model.height // model.patch_size >= 8 and model.width // model.patch_size >= 8
    clip = render_clip(ClipSpec("red", shape, "straight", seed=0), WORLD)
    coverage = clip.masks.reshape(8, 8, 4, 8, 4).mean(axis=(2, 4))
    assert (coverage > 0).sum(axis=(1, 2)).min() >= 6
    if shape != "triangle":  # a triangle fills half its box: 3-6 tokens are more than half covered
        assert (coverage >= 0.5).sum(axis=(1, 2)).min() >= 6


@pytest.mark.parametrize("background", list(BACKGROUNDS))
def test_every_background_is_drawn_as_described_and_named_in_the_prompt(background):
    clip = render_clip(ClipSpec("green", "circle", "straight", seed=1, background=background), WORLD)
    style = world_description(WORLD)["backgrounds"][background]
    near_object = clip.masks[0]
    for axis in (0, 1):  # grow the mask by 2 px so anti-aliased edge pixels are left out
        for shift in (-2, -1, 1, 2):
            near_object = near_object | np.roll(clip.masks[0], shift, axis)
    still = clip.frames[0][~near_object]
    assert {tuple(pixel) for pixel in still} <= {tuple(colour) for colour in style["colours"]}
    if style["kind"] != "plain":
        assert len({tuple(pixel) for pixel in still}) == 2  # a texture: both colours are visible
    assert (background in clip.prompt) == (background != "black")


def test_a_distractor_is_named_in_the_prompt_but_not_in_the_subject_and_never_touches_the_subject():
    spec = ClipSpec("red", "square", "wave", seed=4, split="heldout", distractor=("blue", "circle", "accelerating"))
    clip = render_clip(spec, WORLD)
    assert clip.prompt == "a red square and a small blue circle" and clip.subject == "red square"
    assert clip.distractor_masks.any(axis=(1, 2)).all()
    assert not (clip.masks & clip.distractor_masks).any()
    # It moves on its own path.
    assert np.linalg.norm(clip.distractor_centroids - clip.centroids, axis=1).std() > 0.5


def test_a_distractor_of_the_subjects_colour_or_in_a_world_without_distractors_is_refused():
    with pytest.raises(ValueError, match="must differ in colour"):
        ClipSpec("red", "square", "wave", distractor=("red", "circle", "wave")).validate()
    with pytest.raises(ValueError, match="distractor_size"):
        render_clip(ClipSpec("red", "square", "straight", distractor=("blue", "circle", "wave")), WorldConfig())
    with pytest.raises(ValueError, match="needs the world"):
        random_clip_spec(0, distractor_probability=0.5)


def test_random_specs_cover_the_worlds_backgrounds_and_leave_out_unplaceable_distractors():
    mix = background_mix(WORLD, 0.2)
    specs = [random_clip_spec(seed, "train", mix, distractor_probability=0.3, world=WORLD) for seed in range(300)]
    assert {spec.background for spec in specs} == set(WORLD.backgrounds)
    with_distractor = [spec for spec in specs if spec.distractor is not None]
    assert 0.15 < len(with_distractor) / len(specs) < 0.35
    for spec in with_distractor[:40]:
        render_clip(spec, WORLD)  # every drawn distractor can be placed
    # Clips without a distractor are the same whatever the distractor probability.
    plain = random_clip_spec(5, "train", mix, world=WORLD)
    assert random_clip_spec(5, "train", mix, distractor_probability=0.0, world=WORLD) == plain


def test_the_classifier_reads_colour_shape_background_and_the_subject_path_beside_a_distractor():
    mix = background_mix(WORLD, 0.2)
    for seed in range(30):
        spec = random_clip_spec(seed, "heldout", mix, distractor_probability=0.5, world=WORLD)
        clip = render_clip(spec, WORLD)
        reading = read_frames(clip.frames)
        assert (reading.colour, reading.shape, reading.background_name) == (spec.colour, spec.shape, spec.background)
        assert np.abs(reading.centroids - clip.centroids).max() < 0.5
        assert reading.second_object.all() == (spec.distractor is not None)


def test_the_world_description_holds_what_a_third_party_needs_to_render_clips():
    description = world_description(WORLD)
    assert description["frame"] == {"height": 32, "width": 32, "num_frames": 8}
    assert description["object_size"] == 12 and description["distractor_size"] == 6
    assert description["palette"] == {name: list(rgb) for name, rgb in COLOURS.items()}
    assert set(description["shapes"]) == set(SHAPES)
    assert set(description["backgrounds"]) == set(WORLD.backgrounds)
    assert set(description["trajectories"]["heldout"]).isdisjoint(description["trajectories"]["train"])


def _render_from_description(description: dict, colour: str, shape: str, path, background: str) -> np.ndarray:
    """A renderer written from the description's rules alone, as a third party would write it."""
    frame = description["frame"]
    height, width, factor = frame["height"], frame["width"], description["supersample"]
    style = description["backgrounds"][background]
    colours = np.array(style["colours"] * 2, dtype=np.float64)
    rows, cols = np.mgrid[0:height, 0:width]
    half_period = style["period"] // 2
    index = {
        "plain": np.zeros_like(rows),
        "stripes": (rows // max(half_period, 1)) % 2,
        "checker": (rows // max(half_period, 1) + cols // max(half_period, 1)) % 2,
    }[style["kind"]]
    canvas = colours[index]
    s = description["object_size"]
    sub_y, sub_x = np.mgrid[0 : height * factor, 0 : width * factor]
    centres_x, centres_y = (sub_x + 0.5) / factor, (sub_y + 0.5) / factor
    frames = []
    for x, y in path:
        dx, dy = centres_x - x, centres_y - y
        inside = {
            "square": (np.abs(dx) <= s / 2) & (np.abs(dy) <= s / 2),
            "circle": dx**2 + dy**2 <= (s / 2) ** 2,
            "triangle": (-s / 2 <= dy) & (dy <= s / 2) & (np.abs(dx) <= (s / 2) * (dy + s / 2) / s),
        }[shape]
        coverage = inside.reshape(height, factor, width, factor).mean(axis=(1, 3))[..., None]
        pixels = canvas * (1 - coverage) + np.array(description["palette"][colour], dtype=np.float64) * coverage
        frames.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_renderer_written_from_the_description_alone_reproduces_the_worlds_clips(shape):
    description = world_description(WORLD)
    margin = description["object_centre_margin"]
    # Off-grid positions (edges cut pixels) spanning the allowed centres, one frame per background.
    far_x, far_y = WORLD.width - margin, WORLD.height - margin
    path = np.array([[margin + 0.3, margin + 0.7], [16.25, 15.6], [far_x, 20.1], [12.9, far_y], [17.5, 9.4]])
    for frame, background in zip(path, WORLD.backgrounds):
        expected, _ = render_path("yellow", shape, frame[None], background, WORLD)
        ours = _render_from_description(description, "yellow", shape, frame[None], background)
        assert np.array_equal(ours, expected), (shape, background, np.abs(ours.astype(int) - expected).max())


def test_saved_configs_without_world_fields_read_as_the_first_world():
    old = {key: value for key, value in ToyModelConfig(patch_size=8, text_length=8).to_dict().items()}
    old.pop("backgrounds"), old.pop("distractor_size")
    config = ToyModelConfig.from_dict(old)
    assert config.world.backgrounds == ("black", "white") and config.world.distractor_size == 0
    assert ToyModelConfig.from_dict(ToyModelConfig().to_dict()) == ToyModelConfig()
