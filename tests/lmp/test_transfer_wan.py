"""motion_transfer end to end on tiny Wan pipelines: text-to-video (Wan 2.1, and Wan 2.2's two experts) and
image-to-video, real and generated references, flow-matching re-noising of the reference, and the variant
it does not drive yet."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import attnkit
from attnkit.testing import tiny_wan_image, tiny_wan_pipeline
from attnkit.testing.tiny_wan import (
    WAN22_BOUNDARY_RATIO,
    WAN_GRID,
    WAN_HEIGHT,
    WAN_I2V_TEXT_LEN,
    WAN_NUM_FRAMES,
    WAN_TEXT_LEN,
    WAN_WIDTH,
)
from attnkit_lmp import LMPConfig, UnsupportedPipelineError, motion_transfer
from attnkit_lmp import transfer as transfer_module
from attnkit_lmp.transfer import baseline_generation
from attnkit_lmp.families import WanFamily

from .conftest import PROMPT, REFERENCE_PROMPT, TransferProbe, probe_transfer

STEPS = 2
GEOMETRY = dict(
    height=WAN_HEIGHT, width=WAN_WIDTH, num_frames=WAN_NUM_FRAMES, max_sequence_length=WAN_TEXT_LEN
)


@pytest.fixture(scope="module")
def wan_pipe():
    return tiny_wan_pipeline("t2v")


@pytest.fixture(scope="module")
def wan_unipc_pipe():
    # Wan 2.1's released scheduler class: UniPC on flow sigmas. Its add_noise takes the sigma of the step it
    # was told to begin at, not the step's own, so the reference must not be noised through it.
    from diffusers import UniPCMultistepScheduler

    pipe = tiny_wan_pipeline("t2v")
    pipe.scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return pipe


@pytest.fixture(scope="module")
def wan_i2v_pipe():
    return tiny_wan_pipeline("i2v")


@pytest.fixture(scope="module")
def wan22_pipe():
    return tiny_wan_pipeline("t2v", boundary_ratio=WAN22_BOUNDARY_RATIO)


def config(pipe, **switches) -> LMPConfig:
    geometry = dict(GEOMETRY)
    if pipe.transformer.config.image_dim is not None:  # CLIP image tokens: diffusers fixes the text at 512
        geometry["max_sequence_length"] = WAN_I2V_TEXT_LEN
    return LMPConfig.for_steps(STEPS, guidance_scale=5.0, **geometry, **switches)


def transfer(pipe, reference, image=None, **switches):
    return motion_transfer(
        pipe,
        reference=reference,
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT,
        subject="cat",
        image=image,
        config=config(pipe, **switches),
        generator=torch.Generator().manual_seed(0),
        return_details=True,
        progress=False,
    )


def wan_latent_shape(pipe, num_frames: int, height: int, width: int) -> tuple[int, ...]:
    """The Wan family's initial-latent shape for this geometry."""
    return WanFamily().latent_shape(pipe, SimpleNamespace(num_frames=num_frames, height=height, width=width))


encode_wan_video = WanFamily().encode_video

def baseline(pipe, **call_kwargs) -> torch.Tensor:
    return baseline_generation(pipe, PROMPT, config(pipe), torch.Generator().manual_seed(0), **call_kwargs)


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


@pytest.mark.parametrize("pipe_fixture", ["wan_pipe", "wan_unipc_pipe"])
def test_wan_reference_is_renoised_by_flow_matching_with_the_targets_noise(
    pipe_fixture, request, reference_gif, monkeypatch
):
    # z'_t = sigma_t eps + (1 - sigma_t) z'_0, eps the target's initial noise (eq. 10 in flow-matching form).
    wan_pipe = request.getfixturevalue(pipe_fixture)
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
    assert float(scheduler.sigmas[0]) > 0.999 and float(scheduler.sigmas[1]) < 0.99  # both ends exercised


def test_wan_22_ti2v_layout_is_refused_by_name():
    pipe = tiny_wan_pipeline("t2v")
    pipe.register_to_config(expand_timesteps=True)  # Wan 2.2 TI2V-5B's per-token timesteps
    with pytest.raises(UnsupportedPipelineError, match=r"WanPipeline with expand_timesteps=True \(Wan 2.2 TI2V-5B"):
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


# --- image-to-video -------------------------------------------------------------------------------------


def reference_condition(pipe, first_frame) -> torch.Tensor:
    """The condition channels (frame mask, first-frame latents) WanImageToVideoPipeline makes for ``first_frame``."""
    image = pipe.video_processor.preprocess(first_frame, height=WAN_HEIGHT, width=WAN_WIDTH)
    noise = torch.zeros(wan_latent_shape(pipe, WAN_NUM_FRAMES, WAN_HEIGHT, WAN_WIDTH))
    _, condition = pipe.prepare_latents(image, 1, 16, WAN_HEIGHT, WAN_WIDTH, WAN_NUM_FRAMES, torch.float32, "cpu",
                                        None, noise)
    return condition


def clip_image_tokens(pipe, first_frame) -> torch.Tensor:
    from PIL import Image

    pixels = (first_frame * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return pipe.encode_image(Image.fromarray(pixels), "cpu")


def test_wan_i2v_reference_row_is_conditioned_on_its_own_first_frame(wan_i2v_pipe, reference_gif, monkeypatch):
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    image = tiny_wan_image()
    result = transfer(wan_i2v_pipe, reference_gif, image=image)
    assert result.frames.shape == result.reference_frames.shape == (WAN_NUM_FRAMES, 3, WAN_HEIGHT, WAN_WIDTH)
    assert result.modules == {"fbdm": True, "rmtm": True, "asm": True}
    assert [record.step for record in result.masks] == [0, 1] and result.masks[0].mask.shape == WAN_GRID
    assert {layer for _, layer, _ in result.asm_losses} == {1, 3}  # the cross calls, image keys ahead of text
    condition = reference_condition(wan_i2v_pipe, result.reference_frames[0])
    image_tokens = clip_image_tokens(wan_i2v_pipe, result.reference_frames[0])
    assert [branches for _, branches, _, _ in probe.forwards] == [
        {name: [0], "reference": [1]} for _ in range(STEPS) for name in ("cond", "uncond")
    ]
    for _, _, inputs, _ in probe.forwards:
        target, reference = inputs["hidden_states"][:1], inputs["hidden_states"][1:]
        torch.testing.assert_close(reference[:, 16:], condition, atol=1e-5, rtol=0)  # [z'_t, mask, first frame]
        assert not torch.allclose(target[:, 16:], condition, atol=1e-3)  # the target keeps the user's image
        torch.testing.assert_close(inputs["encoder_hidden_states_image"][1:], image_tokens, atol=1e-5, rtol=0)
        assert not torch.allclose(inputs["encoder_hidden_states_image"][:1], image_tokens, atol=1e-3)
    assert len(probe.calls) == 4 * 2 * STEPS and all(branches["reference"] == [1] for *_, branches in probe.calls)
    assert not torch.allclose(result.frames, baseline(wan_i2v_pipe, image=image), atol=1e-4)


def test_wan_i2v_without_modules_is_the_stock_pipeline(wan_i2v_pipe, reference_gif):
    image = tiny_wan_image()
    result = transfer(wan_i2v_pipe, reference_gif, image=image, enable_fbdm=False, enable_rmtm=False,
                      enable_asm=False)
    torch.testing.assert_close(result.frames, baseline(wan_i2v_pipe, image=image), atol=1e-5, rtol=0)


def test_wan_i2v_generated_reference_starts_from_the_targets_image(wan_i2v_pipe, monkeypatch):
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    result = transfer(wan_i2v_pipe, None, image=tiny_wan_image())
    assert result.record["reference"] == "generated" and result.masks and result.asm_losses
    for _, branches, inputs, _ in probe.forwards:
        assert branches["reference_uncond"] == [1] and branches["reference"] == [2]
        conditions = inputs["hidden_states"][:, 16:]
        assert torch.equal(conditions[1], conditions[0]) and torch.equal(conditions[2], conditions[0])
        image_tokens = inputs["encoder_hidden_states_image"]
        assert torch.equal(image_tokens[1], image_tokens[0]) and torch.equal(image_tokens[2], image_tokens[0])


def test_wan_i2v_without_an_image_is_refused(wan_i2v_pipe, reference_gif):
    from attnkit_lmp import MotionTransferError

    with pytest.raises(MotionTransferError, match="WanImageToVideoPipeline is image-to-video and needs image="):
        transfer(wan_i2v_pipe, reference_gif)


# --- Wan 2.2: two experts -------------------------------------------------------------------------------


def test_wan_22_transfer_runs_on_both_experts(wan22_pipe, reference_gif, monkeypatch):
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    result = transfer(wan22_pipe, reference_gif, asm_steps=STEPS)  # ASM on both steps, i.e. both experts
    # Step 0 is a high-noise step (transformer), step 1 a low-noise one (transformer_2): both are hooked.
    assert [(step, model) for step, _, _, model in probe.forwards] == [
        (0, wan22_pipe.transformer), (0, wan22_pipe.transformer), (1, wan22_pipe.transformer_2),
        (1, wan22_pipe.transformer_2),
    ]
    assert [record.step for record in result.masks] == [0, 1]
    assert sorted({(step, layer) for step, layer, _ in result.asm_losses}) == [(0, 1), (0, 3), (1, 1), (1, 3)]
    assert len(probe.calls) == 4 * 2 * STEPS and all(branches["reference"] == [1] for *_, branches in probe.calls)
    assert not torch.allclose(result.frames, baseline(wan22_pipe), atol=1e-4)
    off = transfer(wan22_pipe, reference_gif, enable_fbdm=False, enable_rmtm=False, enable_asm=False)
    torch.testing.assert_close(off.frames, baseline(wan22_pipe), atol=1e-5, rtol=0)


def tiny_wan22_i2v_pipeline():
    """Wan 2.2 A14B's image-to-video layout: two experts, the first frame in the latents only (no CLIP tokens)."""
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    base = tiny_wan_pipeline("i2v")
    experts = [
        WanTransformer3DModel.from_config(dict(model.config, image_dim=None, added_kv_proj_dim=None)).eval()
        for model in (base.transformer, tiny_wan_pipeline("i2v", seed=1).transformer)
    ]
    pipe = WanImageToVideoPipeline(
        tokenizer=tiny_wan_pipeline("t2v").tokenizer, text_encoder=base.text_encoder, vae=base.vae,
        scheduler=base.scheduler, transformer=experts[0], transformer_2=experts[1],
        boundary_ratio=WAN22_BOUNDARY_RATIO,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_wan_22_image_to_video_runs_on_both_experts_without_image_tokens(reference_gif, monkeypatch):
    pipe = tiny_wan22_i2v_pipeline()
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    image = tiny_wan_image()
    result = transfer(pipe, reference_gif, image=image)
    assert [(step, model) for step, _, _, model in probe.forwards] == [
        (0, pipe.transformer), (0, pipe.transformer), (1, pipe.transformer_2), (1, pipe.transformer_2),
    ]
    condition = reference_condition(pipe, result.reference_frames[0])
    for _, branches, inputs, _ in probe.forwards:
        assert branches["reference"] == [1] and inputs.get("encoder_hidden_states_image") is None
        torch.testing.assert_close(inputs["hidden_states"][1:, 16:], condition, atol=1e-5, rtol=0)
    assert [record.step for record in result.masks] == [0, 1]
    off = transfer(pipe, reference_gif, image=image, enable_fbdm=False, enable_rmtm=False, enable_asm=False)
    torch.testing.assert_close(off.frames, baseline(pipe, image=image), atol=1e-5, rtol=0)
