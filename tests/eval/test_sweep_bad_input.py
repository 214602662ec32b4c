"""Bad inputs stop the sweep with a clear error before any generation, and leave no results behind."""

from __future__ import annotations

import json

import pytest

from attnkit.testing import saved_tiny_cogvideox_pipeline
from attnkit_lmp.cli import main
from attnkit_lmp.eval.datasets import PromptsFileError
from attnkit_lmp.eval.sweep import ItemRunner, SweepError

from sweep_helpers import fast_settings, toy_dataset, toy_dataset_master, video_names  # noqa: F401


@pytest.fixture(autouse=True)
def no_generation(monkeypatch):
    """Any generation would mean the checks let a bad input through to the long work."""

    def refuse(self, item, reference_view):
        raise AssertionError(f"generated {item.key} although the input is bad")

    monkeypatch.setattr(ItemRunner, "generate", refuse)


def expect_error(settings, error_type, pattern):
    from sweep_helpers import sweep

    with pytest.raises(error_type, match=pattern):
        sweep(settings)
    assert not (settings.out / "results").exists() or not list((settings.out / "results").glob("*.jsonl"))


def test_a_missing_frame_in_the_middle_is_named(toy_dataset, tmp_path):
    video = video_names(toy_dataset)[1]
    (toy_dataset / "JPEGImages" / video / "00004.jpg").unlink()
    expect_error(
        fast_settings(toy_dataset, tmp_path / "out"), SweepError, rf"frame '.*{video}/00004.jpg' is missing"
    )


def test_a_missing_last_frame_is_found_through_its_annotation(toy_dataset, tmp_path):
    video = video_names(toy_dataset)[0]
    (toy_dataset / "JPEGImages" / video / "00008.jpg").unlink()
    expect_error(
        fast_settings(toy_dataset, tmp_path / "out"),
        SweepError,
        rf"frame '.*{video}/00008.jpg' is missing: its annotation '.*{video}/00008.png' exists",
    )


def test_a_missing_annotation_is_named_with_the_way_out(toy_dataset, tmp_path):
    video = video_names(toy_dataset)[0]
    (toy_dataset / "Annotations" / video / "00003.png").unlink()
    expect_error(
        fast_settings(toy_dataset, tmp_path / "out"),
        SweepError,
        rf"annotation '.*{video}/00003.png' is missing.*--no-annotations",
    )


def test_a_dataset_without_annotations_runs_only_when_told_and_not_with_the_centroid_tracker(
    toy_dataset, tmp_path
):
    import shutil

    shutil.rmtree(toy_dataset / "Annotations")
    expect_error(fast_settings(toy_dataset, tmp_path / "a"), SweepError, r"no annotations folder")
    expect_error(
        fast_settings(toy_dataset, tmp_path / "b", require_annotations=False, tracker="centroid"),
        SweepError,
        r"--tracker centroid follows the reference's annotated masks",
    )


def test_a_video_shorter_than_the_model_is_refused(tmp_path):
    from sweep_helpers import write_toy_dataset

    dataset = write_toy_dataset(tmp_path / "short", num_videos=1, num_frames=8)
    expect_error(
        fast_settings(dataset, tmp_path / "out"), SweepError, r"has 8 frames .* the model generates 9"
    )


def test_prompts_of_an_unknown_video_and_missing_fields_are_all_listed(toy_dataset, tmp_path):
    prompts = json.loads((toy_dataset / "prompts.json").read_text())
    first = video_names(toy_dataset)[0]
    prompts["videos"]["no-such-video"] = prompts["videos"][first]
    del prompts["videos"][first]["sub"]["subject"]
    (toy_dataset / "prompts.json").write_text(json.dumps(prompts))
    with pytest.raises(PromptsFileError) as raised:
        from sweep_helpers import sweep

        sweep(fast_settings(toy_dataset, tmp_path / "out"))
    message = str(raised.value)
    assert "videos.no-such-video: unknown video, not in the dataset" in message
    assert f"videos.{first}.sub.subject: missing" in message


def test_a_subject_the_model_cannot_tokenise_fails_before_generation(toy_dataset, tmp_path):
    prompts = json.loads((toy_dataset / "prompts.json").read_text())
    first = video_names(toy_dataset)[0]
    prompts["videos"][first]["sub"] = {"subject": "zebra", "prompt": "a zebra"}  # not in the tiny vocabulary
    (toy_dataset / "prompts.json").write_text(json.dumps(prompts))
    expect_error(
        fast_settings(toy_dataset, tmp_path / "out"), SweepError, rf"item '{first}/sub': subject: .*zebra"
    )


def test_a_metric_model_path_that_does_not_exist_fails_before_the_pipeline_loads(
    toy_dataset, tmp_path, monkeypatch
):
    import attnkit_lmp.loading as loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the pipeline was loaded before the metric models were checked")

    monkeypatch.setattr(loading, "load_pipeline", no_loading)
    missing = tmp_path / "models" / "clip-vit-large-patch14"
    expect_error(
        fast_settings(toy_dataset, tmp_path / "out", clip=missing),
        SweepError,
        rf"(?s)no CLIP model folder at '{missing}'.*huggingface-cli download openai/clip-vit-large-patch14.*--clip DIR",
    )
    expect_error(
        fast_settings(toy_dataset, tmp_path / "out", pickscore=tmp_path / "PickScore_v1"),
        SweepError,
        r"--pickscore needs --pickscore-processor",
    )
    expect_error(
        fast_settings(toy_dataset, tmp_path / "out", tracker="cotracker"),
        SweepError,
        r"--tracker cotracker needs --cotracker-checkpoint",
    )
    expect_error(
        fast_settings(
            toy_dataset, tmp_path / "out", tracker="cotracker", cotracker_checkpoint=tmp_path / "none.pth"
        ),
        SweepError,
        r"no CoTracker checkpoint at",
    )


def test_unknown_methods_splits_and_videos_are_named(toy_dataset, tmp_path):
    out = tmp_path / "out"
    expect_error(
        fast_settings(toy_dataset, out, methods=("lmp", "dmt")), SweepError, r"unknown method\(s\) \['dmt'\]"
    )
    expect_error(
        fast_settings(toy_dataset, out, splits=("ori", "style")),
        SweepError,
        r"unknown split\(s\) \['style'\]",
    )
    expect_error(
        fast_settings(toy_dataset, out, videos=("blackswan",)), SweepError, r"\['blackswan'\] have no prompts"
    )


def test_the_command_exits_2_with_one_clear_message(toy_dataset, tmp_path, capsys):
    code = main(
        ["eval", "--dataset", str(toy_dataset), "--prompts", str(toy_dataset / "prompts.json"), "--model", saved_tiny_cogvideox_pipeline("t2v"),
         "--clip", str(tmp_path / "nowhere"), "--seeds", "0,x", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    assert (
        "attnkit-lmp eval: error: --seeds '0,x' must be comma-separated integers" in capsys.readouterr().err
    )
    code = main(
        ["eval", "--dataset", str(tmp_path / "no-dataset"), "--prompts", str(toy_dataset / "prompts.json"),
         "--model", saved_tiny_cogvideox_pipeline("t2v"), "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    assert "no frames folder" in capsys.readouterr().err
