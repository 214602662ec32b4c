"""Clips written as mp4 and as a DAVIS-like folder read back as the same clips."""

import json

import numpy as np

from attnkit_lmp.toy.classify import read_frames
from attnkit_lmp.toy.export import read_davis_clip, read_mp4, write_davis_layout, write_mp4
from attnkit_lmp.toy.world import ClipSpec, random_clip_spec, render_clip


def test_davis_layout_has_the_davis_files_and_reads_back(tmp_path):
    clips = [render_clip(random_clip_spec(seed, "heldout")) for seed in range(2)]
    write_davis_layout(clips, tmp_path)
    for clip in clips:
        assert (tmp_path / "JPEGImages" / clip.name / "00000.jpg").is_file()
        assert (tmp_path / "Annotations" / clip.name / "00007.png").is_file()
        frames, masks = read_davis_clip(tmp_path, clip.name)
        assert np.array_equal(masks, clip.masks)
        assert np.abs(frames.astype(int) - clip.frames).mean() < 3  # JPEG loss only
        reading = read_frames(frames)
        assert (reading.colour, reading.shape) == (clip.spec.colour, clip.spec.shape)


def test_prompts_file_has_the_three_splits_with_a_different_subject_and_background(tmp_path):
    clip = render_clip(ClipSpec("red", "square", "wave", seed=5, split="heldout"))
    write_davis_layout([clip], tmp_path)
    entry = json.loads((tmp_path / "prompts.json").read_text())["videos"][clip.name]
    assert entry["prompt"] == "a red square" and entry["subject"] == "red square"
    sub_colour, sub_shape = entry["sub"]["subject"].split()
    assert sub_colour != "red" and sub_shape != "square"
    assert entry["sub"]["prompt"] == f"a {sub_colour} {sub_shape}"
    assert entry["back"]["prompt"] == "a red square on a white background"
    truth = json.loads((tmp_path / "ground_truth.json").read_text())[clip.name]
    assert np.allclose(truth["centroids"], clip.centroids, atol=1e-3)


def test_mp4_round_trip_keeps_the_object_readable(tmp_path):
    clip = render_clip(ClipSpec("yellow", "circle", "curved", seed=1))
    frames = read_mp4(write_mp4(clip.frames, tmp_path / "clip.mp4"))
    assert frames.shape == clip.frames.shape
    reading = read_frames(frames)
    assert (reading.colour, reading.shape) == ("yellow", "circle")
    assert np.abs(reading.centroids - clip.centroids).max() < 0.5


def test_the_evaluation_harness_reads_the_layout_and_accepts_the_prompts_file(tmp_path):
    from attnkit_lmp.eval.datasets import DavisDataset, load_prompts

    clips = [render_clip(random_clip_spec(seed, "heldout")) for seed in range(3)]
    write_davis_layout(clips, tmp_path)
    dataset = DavisDataset(tmp_path)
    assert sorted(dataset.names) == sorted(clip.name for clip in clips)
    video = dataset.load(clips[0].name)
    assert np.array_equal(video.masks, clips[0].masks)
    prompts = load_prompts(tmp_path / "prompts.json", known_videos=dataset.names)
    assert len(list(prompts.eval_items())) == 3 * len(clips)
