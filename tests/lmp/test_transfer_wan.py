"""motion_transfer end to end on the tiny Wan text-to-video pipeline: real and generated references,
flow-matching re-noising of the reference, and the pipelines it does not drive yet."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.testing import tiny_hunyuan_pipeline, tiny_wan_pipeline
from attnkit.testing.tiny_wan import WAN_GRID, WAN_HEIGHT, WAN_NUM_FRAMES, WAN_TEXT_LEN, WAN_WIDTH
from attnkit_lmp import LMPConfig, UnsupportedPipelineError, motion_transfer
from attnkit_lmp import transfer as transfer_module
from attnkit_lmp.wan_latents import encode_wan_video, wan_latent_shape

from .conftest import PROMPT, REFERENCE_PROMPT

STEPS = 2
GEOMETRY = dict(
    height=WAN_HEIGHT, width=WAN_WIDTH, num_frames=WAN_NUM_FRAMES, max_sequence_length=WAN_TEXT_LEN
)


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


class ReferenceInputs:
    """Test plugin: the reference row's model input at each step, and the step's timestep."""

    name = "test.reference-inputs"

    def __init__(self):
        self.seen: dict[int, tuple[float, torch.Tensor]] = {}

    @attnkit.hookimpl(trylast=True)
    def attnkit_model_inputs(self, session, inputs):
        row = session.branches["reference"][0]
        self.seen.setdefault(session.step, (session.timestep, inputs.latents[row].clone()))


def test_wan_reference_is_renoised_by_flow_matching_with_the_targets_noise(wan_pipe, reference_gif, monkeypatch):
    # z'_t = sigma_t eps + (1 - sigma_t) z'_0, eps the target's initial noise (eq. 10 in flow-matching form).
    seen = ReferenceInputs()
    original = transfer_module.make_plugins

    def with_probe(*args, **kwargs):
        plugins, fbdm, asm = original(*args, **kwargs)
        return [*plugins, seen], fbdm, asm

    monkeypatch.setattr(transfer_module, "make_plugins", with_probe)
    result = transfer(wan_pipe, reference_gif, enable_asm=False)
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(wan_latent_shape(wan_pipe, WAN_NUM_FRAMES, WAN_HEIGHT, WAN_WIDTH),
                         generator=torch.Generator().manual_seed(0))[0]
    clean = encode_wan_video(wan_pipe, result.reference_frames)[0]
    scheduler = wan_pipe.scheduler
    assert sorted(seen.seen) == [0, 1]
    for step, (timestep, latents) in seen.seen.items():
        sigma = float(scheduler.sigmas[step])
        assert abs(float(scheduler.timesteps[step]) - timestep) < 1e-3
        torch.testing.assert_close(latents, sigma * noise + (1 - sigma) * clean, atol=1e-5, rtol=1e-5)
    assert float(scheduler.sigmas[0]) == 1.0 and float(scheduler.sigmas[1]) < 1.0  # both ends exercised


@pytest.mark.parametrize("factory", ["hunyuan", "wan-i2v"])
def test_pipelines_not_yet_driven_are_refused_by_name(factory):
    pipe = tiny_hunyuan_pipeline() if factory == "hunyuan" else tiny_wan_pipeline("i2v")
    with pytest.raises(UnsupportedPipelineError, match=rf"does not support {type(pipe).__name__}; it drives .*WanPipeline"):
        transfer(pipe, None)


def test_wan_reference_noised_once_is_stepped_from_its_noise_step(wan_pipe, reference_gif, monkeypatch):
    branches = []
    original = transfer_module.make_reference_branch

    def keep(*args, **kwargs):
        branches.append(original(*args, **kwargs))
        return branches[-1]

    monkeypatch.setattr(transfer_module, "make_reference_branch", keep)
    transfer(wan_pipe, reference_gif, reference_noising="noise_once", reference_noise_step=1, enable_asm=False)
    (branch,) = branches
    # One scheduler step, taken at step 1: the private scheduler must have stepped from index 1 to 2
    # (from index 0 it would have used the wrong sigmas and ended at 1).
    assert branch.scheduler.step_index == STEPS
    assert branch.final_latents() is branch.latents and torch.isfinite(branch.latents).all()
