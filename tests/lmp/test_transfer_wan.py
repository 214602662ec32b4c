"""motion_transfer end to end on the tiny Wan text-to-video pipeline: real and generated references."""

from __future__ import annotations

import pytest
import torch

from attnkit.testing import tiny_wan_pipeline
from attnkit.testing.tiny_wan import WAN_GRID, WAN_HEIGHT, WAN_NUM_FRAMES, WAN_TEXT_LEN, WAN_WIDTH
from attnkit_lmp import LMPConfig, motion_transfer
from attnkit_lmp.wan_latents import wan_latent_shape

from .conftest import PROMPT, REFERENCE_PROMPT

STEPS = 2
GEOMETRY = dict(height=WAN_HEIGHT, width=WAN_WIDTH, num_frames=WAN_NUM_FRAMES, max_sequence_length=WAN_TEXT_LEN)


@pytest.fixture(scope="module")
def wan_pipe():
    return tiny_wan_pipeline("t2v")


def transfer(pipe, reference, **switches):
    return motion_transfer(
        pipe,
        reference=reference,
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT,
        subject="cat",
        config=LMPConfig.for_steps(STEPS, guidance_scale=5.0, **GEOMETRY, **switches),
        generator=torch.Generator().manual_seed(0),
        return_details=True,
        progress=False,
    )


def stock_pipeline_frames(pipe) -> torch.Tensor:
    """The unmodified pipeline from the initial noise motion_transfer draws with the same seed."""
    from diffusers.utils.torch_utils import randn_tensor

    generator = torch.Generator().manual_seed(0)
    noise = randn_tensor(wan_latent_shape(pipe, WAN_NUM_FRAMES, WAN_HEIGHT, WAN_WIDTH), generator=generator)
    return pipe(
        prompt=PROMPT, negative_prompt="", num_inference_steps=STEPS, guidance_scale=5.0, generator=generator,
        latents=noise, output_type="pt", **GEOMETRY,
    ).frames[0]


def test_wan_transfer_with_a_real_video_runs_every_module_where_its_role_is(wan_pipe, reference_gif):
    result = transfer(wan_pipe, reference_gif)
    assert result.frames.shape == (WAN_NUM_FRAMES, 3, WAN_HEIGHT, WAN_WIDTH)
    assert torch.isfinite(result.frames).all()
    assert result.modules == {"fbdm": True, "rmtm": True, "asm": True}
    assert [record.step for record in result.masks] == [0, 1]
    assert result.masks[0].mask.shape == WAN_GRID
    # ASM runs on the cross calls only: attn2 of each block, odd call indices.
    assert {layer for _, layer, _ in result.asm_losses} == {1, 3}
    assert not torch.allclose(result.frames, stock_pipeline_frames(wan_pipe), atol=1e-4)


def test_wan_transfer_without_modules_is_the_stock_pipeline(wan_pipe, reference_gif):
    # The reference rows are added but nothing reads them: the target must be exactly the stock output.
    result = transfer(wan_pipe, reference_gif, enable_fbdm=False, enable_rmtm=False, enable_asm=False)
    torch.testing.assert_close(result.frames, stock_pipeline_frames(wan_pipe), atol=1e-5, rtol=0)


def test_wan_transfer_with_a_generated_reference(wan_pipe):
    result = transfer(wan_pipe, None)
    assert result.record["reference"] == "generated"
    assert result.reference_frames.shape == (WAN_NUM_FRAMES, 3, WAN_HEIGHT, WAN_WIDTH)
    assert result.masks and result.asm_losses
