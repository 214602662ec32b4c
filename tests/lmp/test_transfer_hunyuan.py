"""motion_transfer end to end on the tiny HunyuanVideo text-to-video pipeline: the reference row with its own
pooled CLIP embedding and text mask, true CFG, generated references, and what is refused."""

from __future__ import annotations

import pytest
import torch

from attnkit.testing import tiny_hunyuan_pipeline, tiny_wan_pipeline
from attnkit.testing.tiny_hunyuan import HUNYUAN_GRID, HUNYUAN_HEIGHT, HUNYUAN_NUM_FRAMES, HUNYUAN_TEXT_LEN
from attnkit_lmp import LMPConfig, MotionTransferError, UnsupportedPipelineError, motion_transfer
from attnkit_lmp import transfer as transfer_module
from attnkit_lmp.transfer import baseline_generation, prepare_transfer

from .conftest import PROMPT, REFERENCE_PROMPT, TransferProbe, probe_transfer

STEPS = 2
TEMPLATE = {"template": "{}", "crop_start": 0}  # the tiny word tokenizer has no Llama chat template
GEOMETRY = dict(
    height=HUNYUAN_HEIGHT,
    width=HUNYUAN_HEIGHT,
    num_frames=HUNYUAN_NUM_FRAMES,
    max_sequence_length=HUNYUAN_TEXT_LEN,
    prompt_template=TEMPLATE,
)
NUM_ATTENTION_MODULES = 2  # one dual-stream and one single-stream block


@pytest.fixture(scope="module")
def hunyuan_pipe():
    return tiny_hunyuan_pipeline()


def config(**changes) -> LMPConfig:
    return LMPConfig.for_steps(STEPS, **{**GEOMETRY, "true_cfg_scale": 2.0, **changes})


def transfer(pipe, reference, **changes):
    return motion_transfer(
        pipe,
        reference=reference,
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT,
        subject="cat",
        config=config(**changes),
        generator=torch.Generator().manual_seed(0),
        return_details=True,
        progress=False,
    )


def baseline(pipe, **changes) -> torch.Tensor:
    return baseline_generation(pipe, PROMPT, config(**changes), torch.Generator().manual_seed(0))


def test_hunyuan_transfer_with_a_real_video_runs_every_module_on_the_joint_calls(hunyuan_pipe, reference_gif):
    result = transfer(hunyuan_pipe, reference_gif)
    assert result.frames.shape == (HUNYUAN_NUM_FRAMES, 3, HUNYUAN_HEIGHT, HUNYUAN_HEIGHT)
    assert torch.isfinite(result.frames).all()
    assert result.modules == {"fbdm": True, "rmtm": True, "asm": True}
    assert [record.step for record in result.masks] == [0, 1]
    assert result.masks[0].mask.shape == HUNYUAN_GRID
    assert 0 < result.masks[0].mask.sum() < result.masks[0].mask.numel()
    assert result.record["fbdm_layers"] == {0: "transformer_blocks.0.attn", 1: "single_transformer_blocks.0.attn"}
    assert {layer for _, layer, _ in result.asm_losses} == {0, 1}  # dual- and single-stream blocks
    assert not torch.allclose(result.frames, baseline(hunyuan_pipe), atol=1e-4)


def test_hunyuan_reference_row_is_in_every_call_with_its_own_pooled_text_and_mask(
    hunyuan_pipe, reference_gif, monkeypatch
):
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    transfer(hunyuan_pipe, reference_gif, enable_asm=False)
    embeds, pooled, mask = hunyuan_pipe.encode_prompt(
        REFERENCE_PROMPT, prompt_template=TEMPLATE, max_sequence_length=HUNYUAN_TEXT_LEN
    )
    target_mask = hunyuan_pipe.encode_prompt(PROMPT, prompt_template=TEMPLATE, max_sequence_length=HUNYUAN_TEXT_LEN)[2]
    assert 0 < int(mask.sum()) < HUNYUAN_TEXT_LEN  # the reference prompt is padded: the mask matters
    # True CFG: a cond forward and an uncond forward per step, the reference row appended to both.
    assert [(step, branches) for step, branches, _, _ in probe.forwards] == [
        (step, {name: [0], "reference": [1]}) for step in range(STEPS) for name in ("cond", "uncond")
    ]
    for _, _, inputs, _ in probe.forwards:
        torch.testing.assert_close(inputs["encoder_hidden_states"][1:], embeds)
        torch.testing.assert_close(inputs["pooled_projections"][1:], pooled)
        assert torch.equal(inputs["encoder_attention_mask"][1:].long(), mask)
        assert torch.equal(inputs["guidance"][1], inputs["guidance"][0])
    assert torch.equal(probe.forwards[0][2]["encoder_attention_mask"][:1].long(), target_mask)
    assert len(probe.calls) == NUM_ATTENTION_MODULES * 2 * STEPS
    assert all(branches["reference"] == [1] and role == "joint" for _, _, role, branches in probe.calls)


def test_hunyuan_transfer_without_modules_is_the_stock_pipeline(hunyuan_pipe, reference_gif):
    # The reference row is added to both forwards of every step but nothing reads it.
    result = transfer(hunyuan_pipe, reference_gif, enable_fbdm=False, enable_rmtm=False, enable_asm=False)
    torch.testing.assert_close(result.frames, baseline(hunyuan_pipe), atol=1e-5, rtol=0)


def test_hunyuan_with_embedded_guidance_only_runs_one_forward_per_step(hunyuan_pipe, reference_gif, monkeypatch):
    probe = TransferProbe()
    probe_transfer(monkeypatch, probe)
    result = transfer(hunyuan_pipe, reference_gif, true_cfg_scale=1.0, enable_asm=False)
    assert [branches for _, branches, _, _ in probe.forwards] == [{"cond": [0], "reference": [1]}] * STEPS
    assert [record.step for record in result.masks] == [0, 1]
    off = transfer(hunyuan_pipe, reference_gif, true_cfg_scale=1.0, enable_fbdm=False, enable_rmtm=False,
                   enable_asm=False)
    torch.testing.assert_close(off.frames, baseline(hunyuan_pipe, true_cfg_scale=1.0), atol=1e-5, rtol=0)


def test_hunyuan_generated_reference_is_denoised_with_its_own_true_cfg(hunyuan_pipe, monkeypatch):
    probe, branches = TransferProbe(), []
    probe_transfer(monkeypatch, probe)
    original = transfer_module.make_reference_branch

    def keep(*args, **kwargs):
        branches.append(original(*args, **kwargs))
        return branches[-1]

    monkeypatch.setattr(transfer_module, "make_reference_branch", keep)
    result = transfer(hunyuan_pipe, None)
    assert result.record["reference"] == "generated" and result.masks and result.asm_losses
    assert result.reference_frames.shape == (HUNYUAN_NUM_FRAMES, 3, HUNYUAN_HEIGHT, HUNYUAN_HEIGHT)
    (branch,) = branches
    assert branch.guidance_scale == 2.0  # true_cfg_scale: the pipeline keeps it out of its attributes
    negative = hunyuan_pipe.encode_prompt("", prompt_template=TEMPLATE, max_sequence_length=HUNYUAN_TEXT_LEN)
    for _, forward_branches, inputs, _ in probe.forwards:
        assert forward_branches["reference_uncond"] == [1] and forward_branches["reference"] == [2]
        torch.testing.assert_close(inputs["pooled_projections"][1:2], negative[1])
        assert torch.equal(inputs["encoder_attention_mask"][1:2].long(), negative[2])


def test_subject_positions_count_from_the_end_of_the_template_prefix(hunyuan_pipe):
    # The pipeline crops the template's first crop_start tokens; "dog" there does not count, "dog" after does.
    template = {"template": "a red dog runs . {}", "crop_start": 5}
    plan = prepare_transfer(
        hunyuan_pipe, None, "a dog runs left", "dog", PROMPT, "cat", None, config(prompt_template=template)
    )
    assert plan.reference_subject_tokens == [1] and plan.target_subject_tokens == [2]
    with pytest.raises(MotionTransferError, match="reference_subject: word 'red' is only in the prompt template"):
        prepare_transfer(hunyuan_pipe, None, "a dog runs left", "red", PROMPT, "cat", None,
                         config(prompt_template=template))


def test_hunyuan_only_fields_are_refused_on_other_models():
    with pytest.raises(MotionTransferError, match=r"true_cfg_scale, prompt_template only apply to HunyuanVideo, "
                       r"but WanPipeline is wan"):
        prepare_transfer(tiny_wan_pipeline("t2v"), None, REFERENCE_PROMPT, "dog", PROMPT, "cat", None, config())


def test_hunyuan_image_to_video_is_refused_saying_why():
    from diffusers import HunyuanVideoImageToVideoPipeline

    pipe = HunyuanVideoImageToVideoPipeline.__new__(HunyuanVideoImageToVideoPipeline)  # the class is what counts
    with pytest.raises(UnsupportedPipelineError, match=r"HunyuanVideo image-to-video is not driven .*LLaVA .*it "
                       r"drives .*'HunyuanVideoPipeline'"):
        transfer(pipe, None)
