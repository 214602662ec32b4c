"""motion_transfer end to end on tiny LTX-Video pipelines: text-to-video and image-to-video, real and generated
references, flow-matching re-noising of the packed reference latent, and the first frame kept clean."""

from __future__ import annotations

import pytest
import torch

from attnkit.testing.tiny_ltx import (
    LTX_GRID,
    LTX_HEIGHT,
    LTX_NUM_FRAMES,
    LTX_TEXT_LEN,
    LTX_WIDTH,
    tiny_ltx_image,
    tiny_ltx_pipeline,
)
from attnkit_lmp import LMPConfig, UnsupportedPipelineError, motion_transfer
from attnkit_lmp.families import LTXVideoFamily
from attnkit_lmp.transfer import baseline_generation

from .conftest import PROMPT, REFERENCE_PROMPT, TransferProbe, probe_transfer

STEPS = 2
GEOMETRY = dict(height=LTX_HEIGHT, width=LTX_WIDTH, num_frames=LTX_NUM_FRAMES, max_sequence_length=LTX_TEXT_LEN)
FIRST_FRAME_TOKENS = LTX_GRID[1] * LTX_GRID[2]  # patch 1: the first latent frame's tokens come first


@pytest.fixture(scope="module")
def ltx_pipe():
    return tiny_ltx_pipeline("t2v")


@pytest.fixture(scope="module")
def ltx_i2v_pipe():
    return tiny_ltx_pipeline("i2v")


def config(**switches) -> LMPConfig:
    return LMPConfig.for_steps(STEPS, guidance_scale=3.0, **GEOMETRY, **switches)


def transfer(pipe, reference, image=None, **switches):
    return motion_transfer(
        pipe,
        reference=reference,
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT,
        subject="cat",
        image=image,
        config=config(**switches),
        generator=torch.Generator().manual_seed(0),
        return_details=True,
        progress=False,
    )


def baseline(pipe, **call_kwargs) -> torch.Tensor:
    return baseline_generation(pipe, PROMPT, config(), torch.Generator().manual_seed(0), **call_kwargs)


def test_ltx_transfer_with_a_real_video_runs_every_module_where_its_role_is(ltx_pipe, reference_gif):
    result = transfer(ltx_pipe, reference_gif)
    assert result.frames.shape == result.reference_frames.shape == (LTX_NUM_FRAMES, 3, LTX_HEIGHT, LTX_WIDTH)
    assert torch.isfinite(result.frames).all()
    assert result.modules == {"fbdm": True, "rmtm": True, "asm": True}
    assert [record.step for record in result.masks] == [0, 1]
    assert result.masks[0].mask.shape == LTX_GRID
    # ASM runs on the cross calls only: attn2 of each block, odd call indices.
    assert {layer for _, layer, _ in result.asm_losses} == {1, 3}
    assert not torch.allclose(result.frames, baseline(ltx_pipe), atol=1e-4)


def test_ltx_transfer_without_modules_is_the_stock_pipeline(ltx_pipe, reference_gif):
    # The reference row is added but nothing reads it: the target must be exactly the stock output.
    result = transfer(ltx_pipe, reference_gif, enable_fbdm=False, enable_rmtm=False, enable_asm=False)
    torch.testing.assert_close(result.frames, baseline(ltx_pipe), atol=1e-5, rtol=0)


def test_ltx_transfer_with_a_generated_reference(ltx_pipe):
    result = transfer(ltx_pipe, None)
    assert result.record["reference"] == "generated"
    assert result.reference_frames.shape == (LTX_NUM_FRAMES, 3, LTX_HEIGHT, LTX_WIDTH)
    assert result.masks and result.asm_losses


def test_ltx_reference_is_renoised_by_flow_matching_with_the_targets_noise(ltx_pipe, reference_gif, monkeypatch):
    # z'_t = sigma_t eps + (1 - sigma_t) z'_0 on the packed latent, eps the target's initial noise; the row
    # carries its own text mask.
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    result = transfer(ltx_pipe, reference_gif, enable_asm=False)
    from diffusers.utils.torch_utils import randn_tensor

    family = LTXVideoFamily()
    noise = randn_tensor(family.latent_shape(ltx_pipe, config()), generator=torch.Generator().manual_seed(0))[0]
    clean = family.encode_video(ltx_pipe, result.reference_frames)[0]
    scheduler = ltx_pipe.scheduler
    prompt_mask = ltx_pipe.encode_prompt(REFERENCE_PROMPT, max_sequence_length=LTX_TEXT_LEN)[1][0]
    assert [branches for _, branches, _, _ in probe.forwards] == [{"uncond": [0], "cond": [1], "reference": [2]}] * STEPS
    for step, _, inputs, _ in probe.forwards:
        sigma = float(scheduler.sigmas[step])
        torch.testing.assert_close(inputs["hidden_states"][2], sigma * noise + (1 - sigma) * clean, atol=1e-5, rtol=1e-5)
        assert torch.equal(inputs["encoder_attention_mask"][2], prompt_mask.to(inputs["encoder_attention_mask"]))
    assert float(scheduler.sigmas[0]) > 0.999 and float(scheduler.sigmas[1]) < 0.99  # both ends exercised


# --- image-to-video -------------------------------------------------------------------------------------


def test_ltx_i2v_reference_row_keeps_its_own_first_frame(ltx_i2v_pipe, reference_gif, monkeypatch):
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    image = tiny_ltx_image()
    result = transfer(ltx_i2v_pipe, reference_gif, image=image)
    assert result.frames.shape == result.reference_frames.shape == (LTX_NUM_FRAMES, 3, LTX_HEIGHT, LTX_WIDTH)
    assert result.modules == {"fbdm": True, "rmtm": True, "asm": True}
    assert [record.step for record in result.masks] == [0, 1] and result.masks[0].mask.shape == LTX_GRID
    assert {layer for _, layer, _ in result.asm_losses} == {1, 3}
    family = LTXVideoFamily()
    reference_first = family.first_frame_condition(ltx_i2v_pipe, result.reference_frames[0], config(), torch.zeros(1))
    target_first = family.first_frame_condition(ltx_i2v_pipe, image, config(), torch.zeros(1))
    first = slice(0, FIRST_FRAME_TOKENS)
    for _, branches, inputs, _ in probe.forwards:
        assert branches == {"uncond": [0], "cond": [1], "reference": [2]}
        latents, timestep = inputs["hidden_states"], inputs["timestep"]
        torch.testing.assert_close(latents[2, first], reference_first.latents[0, first], atol=1e-5, rtol=0)
        torch.testing.assert_close(latents[1, first], target_first.latents[0, first], atol=1e-5, rtol=0)
        # The reference's first frame is as clean as the target's: the per-token timestep is 0 there.
        assert torch.equal(timestep[2], timestep[1]) and bool((timestep[2, first] == 0).all())
    assert not torch.allclose(result.frames, baseline(ltx_i2v_pipe, image=image), atol=1e-4)


def test_ltx_i2v_without_modules_is_the_stock_pipeline(ltx_i2v_pipe, reference_gif):
    image = tiny_ltx_image()
    result = transfer(ltx_i2v_pipe, reference_gif, image=image, enable_fbdm=False, enable_rmtm=False, enable_asm=False)
    torch.testing.assert_close(result.frames, baseline(ltx_i2v_pipe, image=image), atol=1e-5, rtol=0)


def test_ltx_i2v_generated_reference_starts_from_the_targets_image(ltx_i2v_pipe, monkeypatch):
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    result = transfer(ltx_i2v_pipe, None, image=tiny_ltx_image())
    assert result.record["reference"] == "generated" and result.masks and result.asm_losses
    first = slice(0, FIRST_FRAME_TOKENS)
    for _, branches, inputs, _ in probe.forwards:
        assert branches == {"uncond": [0], "cond": [1], "reference_uncond": [2], "reference": [3]}
        latents = inputs["hidden_states"]
        assert torch.equal(latents[2, first], latents[1, first]) and torch.equal(latents[3, first], latents[1, first])


def test_ltx_condition_pipeline_is_refused_by_name():
    from diffusers import LTXConditionPipeline

    base = tiny_ltx_pipeline("t2v")
    pipe = LTXConditionPipeline(**base.components)
    with pytest.raises(UnsupportedPipelineError, match=r"LTXConditionPipeline is not driven by motion_transfer"):
        transfer(pipe, None)
