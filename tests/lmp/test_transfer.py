"""motion_transfer end to end on tiny T2V and I2V pipelines: real and generated references, ablations."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.testing import TINY_CALL_KWARGS, tiny_cogvideox_pipeline, tiny_image
from attnkit_lmp import LMPConfig, motion_transfer

from .conftest import PROMPT, REFERENCE_PROMPT

STEPS = 2


def transfer(pipe, reference, seed=0, subject="cat", config=None, **kwargs):
    return motion_transfer(
        pipe,
        reference=reference,
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT if subject == "cat" else REFERENCE_PROMPT.replace("red", "blue"),
        subject=subject,
        config=config or LMPConfig.for_steps(STEPS),
        generator=torch.Generator().manual_seed(seed),
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def t2v_runs(t2v_pipe, reference_gif):
    """T2V real-video results by module switches, each computed once for the whole module."""
    results = {}

    def run(**switches):
        key = tuple(sorted(switches.items()))
        if key not in results:
            config = LMPConfig.for_steps(STEPS, **switches)
            results[key] = transfer(t2v_pipe, reference_gif, config=config, return_details=True)
        return results[key]

    return run


def test_t2v_with_a_real_video_is_deterministic_under_a_seed(t2v_pipe, reference_gif, t2v_runs):
    first = t2v_runs()
    assert first.frames.shape == (9, 3, 32, 32)
    assert torch.equal(first.frames, transfer(t2v_pipe, reference_gif))
    assert first.modules == {"fbdm": True, "rmtm": True, "asm": True}
    assert [record.step for record in first.masks] == [0, 1]  # fbdm_steps = 2 of 2
    assert first.masks[0].mask.shape == (3, 4, 4)


def test_i2v_with_a_real_video(i2v_pipe, reference_mp4):
    result = transfer(i2v_pipe, reference_mp4, image=tiny_image(), return_details=True)
    assert result.frames.shape == (9, 3, 32, 32)
    assert result.reference_frames.shape == (9, 3, 32, 32)
    assert result.asm_losses and result.masks


def test_i2v_with_a_generated_reference(i2v_pipe):
    result = transfer(i2v_pipe, None, image=tiny_image(), return_details=True)
    assert result.frames.shape == (9, 3, 32, 32) and result.reference_frames.shape == (9, 3, 32, 32)


def test_with_every_module_off_the_result_is_the_plain_pipelines(t2v_pipe, t2v_runs):
    lmp = t2v_runs(enable_fbdm=False, enable_rmtm=False, enable_asm=False).frames
    noise = torch.randn((1, 3, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    plain = t2v_pipe(
        PROMPT,
        latents=noise,
        generator=torch.Generator().manual_seed(0),
        **{**TINY_CALL_KWARGS, "num_inference_steps": STEPS},
    ).frames[0]
    torch.testing.assert_close(lmp, plain, atol=1e-5, rtol=0)


def test_each_module_changes_the_result(t2v_runs):
    def run(**switches):
        return t2v_runs(**switches).frames

    everything = run()
    assert not torch.allclose(everything, run(enable_asm=False))
    assert not torch.allclose(run(enable_asm=False), run(enable_asm=False, enable_fbdm=False))
    assert not torch.allclose(
        run(enable_asm=False, enable_fbdm=False), run(enable_asm=False, enable_fbdm=False, enable_rmtm=False)
    )


def test_asm_runs_only_when_the_subjects_differ(t2v_pipe, reference_gif):
    same_subject = transfer(t2v_pipe, reference_gif, subject="dog", return_details=True)
    assert same_subject.modules["asm"] is False and same_subject.asm_losses == []


class ModelInputRows:
    """Test plugin: the latents of every row at each step (after the reference rows were added)."""

    name = "test.model-inputs"

    def __init__(self):
        self.latents = []

    @attnkit.hookimpl(trylast=True)
    def attnkit_model_inputs(self, session, inputs):
        self.latents.append((session.timestep, inputs.latents.clone(), dict(session.branches)))


def test_the_reference_is_renoised_each_step_with_the_targets_noise(t2v_pipe, reference_gif, monkeypatch):
    from attnkit_lmp import transfer as transfer_module
    from attnkit_lmp.families import CogVideoXFamily
    from attnkit_lmp.video_io import read_video

    recorder = ModelInputRows()
    original_attach = attnkit.attach
    monkeypatch.setattr(
        transfer_module.attnkit,
        "attach",
        lambda pipe, plugins, **options: original_attach(pipe, plugins=[*plugins, recorder], **options),
    )
    transfer(t2v_pipe, reference_gif)
    monkeypatch.undo()

    clean = CogVideoXFamily().encode_video(t2v_pipe, read_video(reference_gif, 9, 32, 32))
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    first_timestep, first_latents, branches = recorder.latents[0]
    assert branches == {"uncond": [0], "cond": [1], "reference": [2]}
    torch.testing.assert_close(first_latents[2], noise[0], atol=1e-6, rtol=0)  # t = T is pure noise
    torch.testing.assert_close(
        first_latents[1], noise[0], atol=0, rtol=0
    )  # the target starts from the same noise
    for timestep, latents, _ in recorder.latents:
        expected = t2v_pipe.scheduler.add_noise(clean, noise, torch.tensor([int(timestep)]))
        torch.testing.assert_close(latents[2:3], expected, atol=1e-6, rtol=0)


def test_noise_once_denoises_the_reference_in_parallel(t2v_runs):
    result = t2v_runs(reference_noising="noise_once", reference_noise_step=0)
    assert result.record["reference_mode"] == "noise_once"
    assert not torch.equal(result.frames, t2v_runs().frames)


def test_t2v_with_a_generated_reference_on_the_dpm_scheduler_and_cogvideox_1_5():
    pipe = tiny_cogvideox_pipeline("t2v", version="1.5", scheduler="dpm")
    result = transfer(pipe, None, return_details=True)
    assert result.record["reference"] == "generated" and result.record["reference_mode"] == "generate"
    assert result.frames.shape == (9, 3, 32, 32) and result.reference_frames.shape == (9, 3, 32, 32)
    assert [record.mask.shape for record in result.masks] == [(2, 4, 4)] * 2


def test_the_result_names_the_attention_modules_fbdm_averaged(t2v_pipe, t2v_runs):
    result = t2v_runs()
    expected = {layer: f"transformer_blocks.{layer}.attn1" for layer in range(t2v_pipe.transformer.config.num_layers)}
    assert result.record["fbdm_layers"] == expected
