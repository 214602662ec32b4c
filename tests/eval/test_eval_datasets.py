"""DAVIS-layout loading (both layouts, clear errors for missing data) and the prompts file of three splits."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from attnkit_lmp.eval.datasets import (
    DatasetError,
    DavisDataset,
    PromptsFile,
    PromptsFileError,
    load_prompts,
    subject_occurs_in,
)


def write_video(root, name, num_frames=3, resolution="480p", size=(24, 16), suffix=".png", masks=True):
    """Frames with a distinct value per frame, and palette masks with object index 2 on the left half."""
    level = [resolution] if resolution else []
    frame_dir = root.joinpath("JPEGImages", *level, name)
    mask_dir = root.joinpath("Annotations", *level, name)
    frame_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    for t in range(num_frames):
        frame = np.full((height, width, 3), 40 * t + 10, dtype=np.uint8)
        Image.fromarray(frame).save(frame_dir / f"{t:05d}{suffix}")
        if masks:
            mask_dir.mkdir(parents=True, exist_ok=True)
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[:, : width // 2 + t] = 2
            image = Image.fromarray(mask, mode="P")
            image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
            image.save(mask_dir / f"{t:05d}.png")
    return frame_dir, mask_dir


def test_loads_the_davis_layout_with_resolution_folder(tmp_path):
    write_video(tmp_path, "bear", num_frames=3)
    write_video(tmp_path, "blackswan", num_frames=4)
    dataset = DavisDataset(tmp_path)
    assert dataset.names == ["bear", "blackswan"] and len(dataset) == 2 and "bear" in dataset
    video = dataset.load("blackswan")
    assert video.name == "blackswan"
    assert video.frames.shape == (4, 16, 24, 3) and video.frames.dtype == np.uint8
    assert video.frames[:, 0, 0, 0].tolist() == [10, 50, 90, 130]
    assert video.masks.shape == (4, 16, 24) and video.masks.dtype == bool
    assert video.masks[2].sum(axis=1).tolist() == [12 + 2] * 16
    assert [path.name for path in video.frame_paths] == ["00000.png", "00001.png", "00002.png", "00003.png"]


def test_loads_the_toy_layout_without_resolution_folder(tmp_path):
    write_video(tmp_path, "red-square-wave", resolution=None)
    dataset = DavisDataset(tmp_path)
    assert dataset.names == ["red-square-wave"]
    assert dataset.load("red-square-wave").masks.shape == (3, 16, 24)


def test_jpeg_frames_load_as_rgb(tmp_path):
    write_video(tmp_path, "bear", suffix=".jpg")
    frames = DavisDataset(tmp_path).load("bear").frames
    assert frames.shape == (3, 16, 24, 3)
    assert abs(int(frames[1, 5, 5, 0]) - 50) <= 2  # JPEG is lossy


def test_binary_0_255_masks_are_foreground_where_non_zero(tmp_path):
    _, mask_dir = write_video(tmp_path, "bear", num_frames=1)
    mask = np.zeros((16, 24), dtype=np.uint8)
    mask[3:5, 7:9] = 255
    Image.fromarray(mask).save(mask_dir / "00000.png")
    assert DavisDataset(tmp_path).load("bear").masks[0].sum() == 4


def test_iteration_loads_every_video(tmp_path):
    write_video(tmp_path, "a")
    write_video(tmp_path, "b")
    assert [video.name for video in DavisDataset(tmp_path)] == ["a", "b"]


def test_num_frames_keeps_the_first_frames(tmp_path):
    write_video(tmp_path, "bear", num_frames=5)
    dataset = DavisDataset(tmp_path)
    video = dataset.load("bear", num_frames=2)
    assert video.frames.shape[0] == 2 and video.masks.shape[0] == 2
    with pytest.raises(DatasetError, match="has 5 frames .* cannot take the first 49"):
        dataset.load("bear", num_frames=49)


def test_a_gap_in_frame_numbers_names_the_missing_frame(tmp_path):
    frame_dir, _ = write_video(tmp_path, "bear", num_frames=4)
    (frame_dir / "00002.png").unlink()
    with pytest.raises(DatasetError) as error:
        DavisDataset(tmp_path).load("bear")
    assert str(frame_dir / "00002.png") in str(error.value)


def test_a_missing_last_frame_is_found_through_its_annotation(tmp_path):
    frame_dir, mask_dir = write_video(tmp_path, "bear", num_frames=4)
    (frame_dir / "00003.png").unlink()
    with pytest.raises(DatasetError) as error:
        DavisDataset(tmp_path).load("bear")
    assert f"frame '{frame_dir / '00003.png'}' is missing: its annotation" in str(error.value)


def test_unpadded_frame_numbers_load_in_numeric_order(tmp_path):
    frame_dir = tmp_path / "JPEGImages" / "bear"
    frame_dir.mkdir(parents=True)
    for t in range(12):
        Image.fromarray(np.full((4, 4, 3), t, dtype=np.uint8)).save(frame_dir / f"{t}.png")
    video = DavisDataset(tmp_path, require_annotations=False).load("bear")
    assert video.frames[:, 0, 0, 0].tolist() == list(range(12))


def test_first_frame_only_annotations_load_without_masks_when_not_required(tmp_path):
    _, mask_dir = write_video(tmp_path, "bear", num_frames=3)
    for t in (1, 2):
        (mask_dir / f"{t:05d}.png").unlink()
    assert DavisDataset(tmp_path, require_annotations=False).load("bear").masks is None


def test_a_missing_annotation_names_its_path(tmp_path):
    _, mask_dir = write_video(tmp_path, "bear", num_frames=3)
    (mask_dir / "00001.png").unlink()
    with pytest.raises(DatasetError) as error:
        DavisDataset(tmp_path).load("bear")
    assert f"annotation '{mask_dir / '00001.png'}' is missing" in str(error.value)


def test_a_missing_annotation_folder_of_one_video_names_its_path(tmp_path):
    write_video(tmp_path, "bear")
    write_video(tmp_path, "cow", masks=False)
    with pytest.raises(DatasetError, match="Annotations/480p/cow/00000.png' is missing"):
        DavisDataset(tmp_path).load("cow")
    assert DavisDataset(tmp_path, require_annotations=False).load("cow").masks is None


def test_no_annotations_at_all_is_an_error_unless_frames_only_are_asked_for(tmp_path):
    write_video(tmp_path, "bear", masks=False)
    with pytest.raises(DatasetError, match="no annotations folder .* require_annotations=False"):
        DavisDataset(tmp_path)
    assert DavisDataset(tmp_path, require_annotations=False).load("bear").masks is None


def test_missing_jpegimages_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=f"no frames folder '{tmp_path / 'JPEGImages'}'"):
        DavisDataset(tmp_path)


def test_another_resolution_only_is_an_error_that_names_it(tmp_path):
    write_video(tmp_path, "bear", resolution="Full-Resolution")
    with pytest.raises(DatasetError, match="Full-Resolution.* pass resolution="):
        DavisDataset(tmp_path)
    assert DavisDataset(tmp_path, resolution="Full-Resolution").names == ["bear"]


def test_an_unknown_video_lists_the_known_ones(tmp_path):
    write_video(tmp_path, "bear")
    with pytest.raises(DatasetError, match="no video 'dog' .* known videos: bear"):
        DavisDataset(tmp_path).load("dog")


def test_frames_of_different_sizes_are_an_error(tmp_path):
    frame_dir, _ = write_video(tmp_path, "bear")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(frame_dir / "00001.png")
    with pytest.raises(DatasetError, match="00001.png' is 8x8"):
        DavisDataset(tmp_path).load("bear")


VALID_PROMPTS = {
    "videos": {
        "blackswan": {
            "subject": "swan",
            "prompt": "A black swan glides across a calm pond.",
            "sub": {"subject": "duck", "prompt": "A white duck glides across a calm pond."},
            "back": {"prompt": "A black swan glides across a neon-lit city canal."},
        },
        "bear": {
            "subject": "brown bear",
            "prompt": "A Brown Bear walks over rocks.",
            "sub": {"subject": "tiger", "prompt": "A tiger walks over rocks."},
            "back": {"prompt": "A brown bear walks through snow."},
        },
    }
}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_valid_prompts_file_loads_and_round_trips(tmp_path, suffix):
    path = tmp_path / f"prompts{suffix}"
    path.write_text(
        json.dumps(VALID_PROMPTS) if suffix == ".json" else yaml.safe_dump(VALID_PROMPTS, sort_keys=False)
    )
    prompts = load_prompts(path, known_videos=["bear", "blackswan", "cows"])
    assert list(prompts.videos) == ["blackswan", "bear"]
    assert prompts.videos["bear"].sub_subject == "tiger"
    assert prompts.to_dict() == VALID_PROMPTS


def test_eval_items_pair_each_split_with_the_reference_prompt():
    items = PromptsFile.from_dict(VALID_PROMPTS).eval_items()
    assert [item.key for item in items] == [
        "blackswan/ori",
        "blackswan/sub",
        "blackswan/back",
        "bear/ori",
        "bear/sub",
        "bear/back",
    ]
    ori, sub, back = items[:3]
    assert (ori.prompt, ori.subject) == ("A black swan glides across a calm pond.", "swan")
    assert (sub.prompt, sub.subject) == ("A white duck glides across a calm pond.", "duck")
    assert (back.prompt, back.subject) == ("A black swan glides across a neon-lit city canal.", "swan")
    assert {(item.reference_prompt, item.reference_subject) for item in items[:3]} == {
        ("A black swan glides across a calm pond.", "swan")
    }


def test_eval_items_can_select_splits_and_videos():
    prompts = PromptsFile.from_dict(VALID_PROMPTS)
    assert [item.key for item in prompts.eval_items(splits=["sub"], videos=["bear"])] == ["bear/sub"]
    with pytest.raises(ValueError, match="unknown split"):
        prompts.eval_items(splits=["original"])
    with pytest.raises(ValueError, match="have no prompts"):
        prompts.eval_items(videos=["cows"])


def test_every_problem_is_reported_at_once(tmp_path):
    broken = {
        "videos": {
            "blackswan": {
                "subject": "swan",
                "prompt": "A black bird glides.",  # subject missing from its prompt
                "sub": {"prompt": "A duck glides."},  # no subject
                # no back
            },
            "dog": {  # not in the dataset
                "subject": "dog",
                "promt": "A dog runs.",  # typo: unknown field, and prompt missing
                "sub": {"subject": "dog", "prompt": "A dog runs."},  # subject not changed
                "back": {"prompt": "A cat runs on the beach."},  # Ori subject not in the Back prompt
            },
        }
    }
    path = tmp_path / "prompts.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(PromptsFileError) as error:
        load_prompts(path, known_videos=["blackswan", "bear"])
    problems = error.value.problems
    expected_fragments = [
        "videos.blackswan.prompt: subject 'swan' does not occur",
        "videos.blackswan.sub.subject: missing",
        "videos.blackswan.back: missing",
        "videos.dog: unknown video",
        "videos.dog.promt: unknown field",
        "videos.dog.prompt: missing",
        "videos.dog.sub.subject: 'dog' equals the Ori subject",
        "videos.dog.back.prompt: subject 'dog' does not occur",
    ]
    for fragment in expected_fragments:
        assert any(fragment in problem for problem in problems), fragment
    assert len(problems) == len(expected_fragments)
    assert str(path) in str(error.value) and "8 problem(s)" in str(error.value)


def test_non_string_fields_are_problems():
    data = {"videos": {"bear": {"subject": 3, "prompt": "", "sub": "tiger", "back": {"prompt": None}}}}
    with pytest.raises(PromptsFileError) as error:
        PromptsFile.from_dict(data)
    assert len(error.value.problems) == 4


@pytest.mark.parametrize(
    "data, fragment",
    [
        ([1, 2], "top level must be a mapping with a 'videos' key"),
        ({"videos": {}}, "non-empty mapping"),
        ({"videos": VALID_PROMPTS["videos"], "version": 2}, "version: unknown top-level key"),
    ],
)
def test_malformed_top_level_is_reported(data, fragment):
    with pytest.raises(PromptsFileError, match=fragment):
        PromptsFile.from_dict(data)


def test_unparsable_and_missing_files_are_clear_errors(tmp_path):
    bad_yaml = tmp_path / "prompts.yaml"
    bad_yaml.write_text("videos: [unclosed\n")
    with pytest.raises(PromptsFileError, match="cannot parse as YAML"):
        load_prompts(bad_yaml)
    with pytest.raises(PromptsFileError, match="file not found"):
        load_prompts(tmp_path / "absent.json")
    text_file = tmp_path / "prompts.txt"
    text_file.write_text("")
    with pytest.raises(PromptsFileError, match="expected .yaml, .yml or .json"):
        load_prompts(text_file)


@pytest.mark.parametrize(
    "subject, prompt, occurs",
    [
        ("dog", "A Dog runs.", True),
        ("dog", "Two dogs run.", False),
        ("brown bear", "a brown bear walks", True),
        ("cat", "a catamaran sails", False),
        ("t-rex", "a t-rex roars", True),
    ],
)
def test_subject_must_occur_as_whole_words(subject, prompt, occurs):
    assert subject_occurs_in(subject, prompt) is occurs
