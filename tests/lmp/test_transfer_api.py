"""``motion_transfer`` called like a diffusers pipeline: extra call arguments, generator lists, several
videos, output types, the output object, and one switch for every progress bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attnkit_lmp import LMPConfig, motion_transfer
from attnkit_lmp.transfer import MotionTransferError, MotionTransferResult

from .conftest import PROMPT, REFERENCE_PROMPT

CONFIG = LMPConfig.for_steps(2, height=32, width=32, num_frames=9, max_sequence_length=16)


def transfer(pipe, reference, **kwargs):
    kwargs.setdefault("generator", torch.Generator().manual_seed(0))
    kwargs.setdefault("progress", False)
    return motion_transfer(
        pipe,
        reference=reference,
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT,
        subject="cat",
        config=CONFIG,
        **kwargs,
    )


def test_callback_on_step_end_goes_to_the_pipeline(t2v_pipe, reference_gif):
    steps = []

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        steps.append(step)
        return callback_kwargs

    transfer(t2v_pipe, reference_gif, callback_on_step_end=on_step_end)
    assert steps == [0, 1]


def test_an_argument_the_pipeline_does_not_take_is_named(t2v_pipe, reference_gif):
    with pytest.raises(MotionTransferError, match=r"takes no argument 'strength'"):
        transfer(t2v_pipe, reference_gif, strength=0.5)


def test_an_argument_motion_transfer_sets_itself_is_refused(t2v_pipe, reference_gif):
    with pytest.raises(MotionTransferError, match=r"guidance_scale= is set by motion_transfer itself.*LMPConfig"):
        transfer(t2v_pipe, reference_gif, guidance_scale=3.0)


def test_a_generator_list_makes_one_video_per_generator(t2v_pipe, reference_gif):
    generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    both = transfer(t2v_pipe, reference_gif, generator=generators, num_videos_per_prompt=2)
    assert both.shape == (2, 9, 3, 32, 32)
    torch.testing.assert_close(both[1], transfer(t2v_pipe, reference_gif, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(both[0], both[1])


def test_a_generator_list_of_the_wrong_length(t2v_pipe, reference_gif):
    with pytest.raises(MotionTransferError, match="list of 1, but num_videos_per_prompt=2"):
        transfer(t2v_pipe, reference_gif, generator=[torch.Generator()], num_videos_per_prompt=2)


def test_output_types(t2v_pipe, reference_gif):
    frames = transfer(t2v_pipe, reference_gif)
    array = transfer(t2v_pipe, reference_gif, output_type="np")
    assert isinstance(array, np.ndarray) and array.shape == (9, 32, 32, 3)
    np.testing.assert_allclose(array, frames.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    images = transfer(t2v_pipe, reference_gif, output_type="pil")
    assert len(images) == 9 and isinstance(images[0], Image.Image) and images[0].size == (32, 32)
    with pytest.raises(MotionTransferError, match="output_type='mp4' is not one of"):
        transfer(t2v_pipe, reference_gif, output_type="mp4")


def test_the_output_object_carries_frames_and_record(t2v_pipe, reference_gif):
    result = transfer(t2v_pipe, reference_gif, return_details=True)
    assert isinstance(result, MotionTransferResult) and result.frames.shape == (9, 3, 32, 32)
    assert result.record["prompt"] == PROMPT and result.record["reference"] == "video"


def bars(text: str) -> int:
    """How many progress bars over the 2 denoising steps were drawn (each starts at 0/2)."""
    return text.count("| 0/2 [")


def test_progress_false_shows_no_bar(t2v_pipe, reference_gif, capfd):
    transfer(t2v_pipe, reference_gif, progress=False)
    assert bars(capfd.readouterr().err) == 0


def test_progress_true_shows_one_bar_and_restores_the_pipelines(t2v_pipe, reference_gif, capfd):
    t2v_pipe.set_progress_bar_config(leave=True)
    transfer(t2v_pipe, reference_gif, progress=True)
    err = capfd.readouterr().err
    assert bars(err) == 1 and "LMP motion transfer" in err
    assert t2v_pipe._progress_bar_config == {"leave": True}
    t2v_pipe.set_progress_bar_config()
