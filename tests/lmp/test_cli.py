"""The ``attnkit-lmp transfer`` command: outputs written, saved checkpoints (CogVideoX, HunyuanVideo, Wan
image-to-video) loaded by path, bad input."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest
import torch

from attnkit.testing import (
    saved_tiny_cogvideox_pipeline,
    tiny_cogvideox_pipeline,
    tiny_hunyuan_pipeline,
    tiny_image,
    tiny_wan_image,
    tiny_wan_pipeline,
)
from attnkit_lmp import LMPConfig
from attnkit_lmp import transfer_command
from attnkit_lmp.cli import main, registered_commands
from attnkit_lmp.video_io import load_frames

from .conftest import PROMPT, REFERENCE_PROMPT


def arguments(out, reference, model=None, *extra):
    return [
        "transfer",
        "--model",
        model or saved_tiny_cogvideox_pipeline("t2v"),
        "--reference",
        str(reference),
        "--reference-prompt",
        REFERENCE_PROMPT,
        "--reference-subject",
        "dog",
        "--prompt",
        PROMPT,
        "--subject",
        "cat",
        "--steps",
        "2",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_transfer_is_registered_beside_the_other_subcommands():
    assert {"transfer", "demo"} <= set(registered_commands())


def test_transfer_writes_video_config_masks_and_side_by_side(tmp_path, reference_gif):
    out = tmp_path / "run"
    assert main(arguments(out, reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--seed", "3")) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "frames",
        "masks.html",
        "side_by_side.gif",
        "side_by_side.mp4",
        "video.gif",
        "video.mp4",
    ]
    video, both = load_frames(out / "video.mp4"), load_frames(out / "side_by_side.gif")
    assert video.shape[0] == 9 and both.shape[0] == 9
    assert both.shape[3] > 2 * video.shape[3]  # reference | result
    run = json.loads((out / "config.json").read_text())
    # The frames as generated, at the model's 32 x 32; the videos enlarged by the recorded factor.
    frames, upscale = load_frames(out / "frames"), run["run"]["video_upscale"]
    assert frames.shape == (9, 3, 32, 32) and upscale > 1 and video.shape[-2:] == (32 * upscale, 32 * upscale)
    assert run["run"]["seed"] == 3 and run["run"]["modules"] == {"fbdm": True, "rmtm": True, "asm": True}
    assert LMPConfig.load(out / "config.json") == LMPConfig.for_steps(
        2, height=32, width=32, num_frames=9, max_sequence_length=16
    )
    page = (out / "masks.html").read_text()
    assert "plotly" in page and "dog: foreground mask" in page


def test_a_saved_i2v_checkpoint_loads_by_path(tmp_path, reference_gif):
    model = tmp_path / "tiny-i2v"
    tiny_cogvideox_pipeline("i2v").save_pretrained(model)
    image = tmp_path / "first.png"
    iio.imwrite(image, (tiny_image().permute(1, 2, 0).numpy() * 255).astype("uint8"))
    out = tmp_path / "run"
    assert main(arguments(out, reference_gif, str(model), "--image", str(image))) == 0
    assert load_frames(out / "video.gif").shape[0] == 9


def test_a_saved_hunyuan_video_checkpoint_loads_by_path(tmp_path, reference_gif):
    model = tmp_path / "tiny-hunyuan"
    tiny_hunyuan_pipeline().save_pretrained(model)
    config = tmp_path / "hunyuan.yaml"
    # The tiny word tokenizer has no Llama chat template: the prompt is used as it is.
    LMPConfig(
        height=64, width=64, num_frames=9, max_sequence_length=16, true_cfg_scale=2.0,
        prompt_template={"template": "{}", "crop_start": 0},
    ).save(config)
    out = tmp_path / "run"
    assert main(arguments(out, reference_gif, str(model), "--config", str(config))) == 0
    assert load_frames(out / "video.gif").shape[0] == 9
    run = json.loads((out / "config.json").read_text())
    assert run["config"]["prompt_template"] == {"template": "{}", "crop_start": 0}
    assert run["config"]["true_cfg_scale"] == 2.0 and run["config"]["num_inference_steps"] == 2
    assert "dog: foreground mask" in (out / "masks.html").read_text()


def test_a_saved_wan_image_to_video_checkpoint_loads_by_path(tmp_path, reference_gif):
    model = tmp_path / "tiny-wan-i2v"
    tiny_wan_pipeline("i2v").save_pretrained(model)
    config = tmp_path / "wan.yaml"
    LMPConfig(height=64, width=64, num_frames=9, guidance_scale=5.0).save(config)  # text: the pipeline's 512
    image = tmp_path / "first.png"
    tiny_wan_image().save(image)
    out = tmp_path / "run"
    assert main(arguments(out, reference_gif, str(model), "--config", str(config), "--image", str(image))) == 0
    assert load_frames(out / "video.gif").shape[0] == 9
    assert json.loads((out / "config.json").read_text())["config"]["max_sequence_length"] == 512


def bad_run(capsys, argv):
    code = main(argv)
    error = capsys.readouterr().err
    assert code == 2, error
    return error


@pytest.fixture
def model_never_loaded(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(transfer_command, "load_pipeline", refuse)


@pytest.fixture
def denoising_never_starts(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("denoising started before the bad input was reported")

    monkeypatch.setattr("attnkit_lmp.transfer.attnkit.attach", refuse)


def test_output_folder_not_writable(tmp_path, capsys, reference_gif, model_never_loaded):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    error = bad_run(capsys, arguments(blocker / "out", reference_gif))
    assert "output folder" in error and "not writable" in error and "--out" in error


def test_unreadable_reference(tmp_path, capsys, model_never_loaded):
    broken = tmp_path / "broken.gif"
    broken.write_bytes(b"GIF89a broken")
    assert "cannot read reference video" in bad_run(capsys, arguments(tmp_path / "out", broken))


def test_config_with_thresholds_above_the_steps(tmp_path, capsys, reference_gif, model_never_loaded):
    config = tmp_path / "config.yaml"
    LMPConfig(num_inference_steps=4, fbdm_steps=3, rmtm_steps=4, asm_steps=3).save(config)
    config.write_text(config.read_text().replace("rmtm_steps: 4", "rmtm_steps: 9"))
    argv = [a for a in arguments(tmp_path / "out", reference_gif) if a not in ("--steps", "2")] + [
        "--config",
        str(config),
    ]
    assert "rmtm_steps=9 is invalid" in bad_run(capsys, argv)


def test_lambda_not_positive_in_the_config(tmp_path, capsys, reference_gif, model_never_loaded):
    values = {**LMPConfig.for_steps(2).to_dict(), "rmtm_lambda": -1.0}  # an LMPConfig refuses it when built
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    assert "rmtm_lambda=-1.0 is invalid" in bad_run(
        capsys, arguments(tmp_path / "out", reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--config", str(path))
    )


def test_model_folder_that_is_not_a_pipeline(tmp_path, capsys, reference_gif, model_never_loaded):
    assert "is not a diffusers pipeline folder" in bad_run(
        capsys, arguments(tmp_path / "out", reference_gif, str(tmp_path))
    )


def test_subject_not_in_prompt(tmp_path, capsys, reference_gif, denoising_never_starts):
    argv = arguments(tmp_path / "out", reference_gif)
    argv[argv.index("--subject") + 1] = "horse"
    error = bad_run(capsys, argv)
    assert "'horse' is not in prompt 'a blue cat runs left'" in error and "'cat'" in error


def test_image_for_a_t2v_model_and_none_for_an_i2v_model(
    tmp_path, capsys, reference_gif, denoising_never_starts
):
    image = tmp_path / "first.png"
    iio.imwrite(image, torch.zeros(32, 32, 3, dtype=torch.uint8).numpy())
    assert "is text-to-video" in bad_run(
        capsys, arguments(tmp_path / "out", reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--image", str(image))
    )
    assert "needs image=" in bad_run(capsys, arguments(tmp_path / "out", reference_gif, saved_tiny_cogvideox_pipeline("i2v")))
