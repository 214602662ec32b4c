"""Every bad input of motion_transfer is a clear error raised before any encoding or denoising starts."""

from __future__ import annotations

import pytest
import torch

from attnkit.testing import tiny_image
from attnkit_lmp import (
    LMPConfig,
    LMPConfigError,
    MotionTransferError,
    UnsupportedPipelineError,
    VideoReadError,
    motion_transfer,
)
from attnkit_lmp import transfer as transfer_module

from .conftest import PROMPT, REFERENCE_PROMPT


@pytest.fixture(autouse=True)
def no_long_work(monkeypatch):
    """Fail the test if motion_transfer gets past its checks (noise, encoding and denoising come after)."""

    def started(*args, **kwargs):
        raise AssertionError("long work started before the bad input was reported")

    monkeypatch.setattr(transfer_module, "initial_noise", started)


def call(pipe, reference=None, **overrides):
    arguments = dict(
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT,
        subject="cat",
        config=LMPConfig.for_steps(2),
        progress=False,
    )
    arguments.update(overrides)
    return motion_transfer(pipe, reference=reference, **arguments)


def test_subject_not_in_its_prompt_names_the_word_and_the_prompts_tokens(t2v_pipe):
    with pytest.raises(
        MotionTransferError,
        match=r"reference_subject: word 'horse' is not in prompt 'a red dog runs left'"
        r".*\['a', 'red', 'dog', 'runs', 'left', '</s>'\]",
    ):
        call(t2v_pipe, reference_subject="horse")
    with pytest.raises(
        MotionTransferError, match=r"subject: word 'dog' is not in prompt 'a blue cat runs left'"
    ):
        call(t2v_pipe, subject="dog")


def test_unreadable_reference_video(t2v_pipe, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(VideoReadError, match="cannot read reference video"):
        call(t2v_pipe, reference=broken)


def test_too_short_reference_video(t2v_pipe):
    with pytest.raises(VideoReadError, match="has 5 frames but the model generates 9"):
        call(t2v_pipe, reference=torch.rand(5, 3, 32, 32))


def test_reference_of_another_size_is_resized(t2v_pipe):
    plan = transfer_module.prepare_transfer(
        t2v_pipe,
        torch.rand(9, 3, 50, 70),
        REFERENCE_PROMPT,
        "dog",
        PROMPT,
        "cat",
        None,
        LMPConfig.for_steps(2),
    )
    assert plan.reference_frames.shape == (9, 3, 32, 32)


def test_image_given_to_a_text_to_video_pipeline(t2v_pipe):
    with pytest.raises(
        MotionTransferError, match="an image was given but CogVideoXPipeline is text-to-video"
    ):
        call(t2v_pipe, image=tiny_image())


def test_image_missing_for_image_to_video(i2v_pipe):
    with pytest.raises(
        MotionTransferError, match="CogVideoXImageToVideoPipeline is image-to-video and needs image="
    ):
        call(i2v_pipe)


def test_step_thresholds_above_num_inference_steps(t2v_pipe):
    with pytest.raises(LMPConfigError, match=r"fbdm_steps=40 is invalid.*0\.\.num_inference_steps=2"):
        call(t2v_pipe, config=LMPConfig(num_inference_steps=2))


def test_lambda_not_positive(t2v_pipe):
    with pytest.raises(LMPConfigError, match=r"rmtm_lambda=0\.0 is invalid"):
        call(t2v_pipe, config=LMPConfig.for_steps(2, rmtm_lambda=0.0))


def test_unsupported_pipeline_class():
    class StableDiffusionPipeline:
        pass

    with pytest.raises(
        UnsupportedPipelineError,
        match=r"does not support StableDiffusionPipeline.*CogVideoXImageToVideoPipeline",
    ):
        call(StableDiffusionPipeline())


def test_frame_count_the_vae_cannot_take(t2v_pipe):
    with pytest.raises(MotionTransferError, match=r"num_frames=10 does not fit the VAE: it must be 4k \+ 1"):
        call(t2v_pipe, config=LMPConfig.for_steps(2, num_frames=10))
