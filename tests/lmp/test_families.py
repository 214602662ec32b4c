"""Model families: each driven pipeline maps to its family object, which is passed down, never its name."""

from __future__ import annotations

import pytest
import torch

from attnkit.testing import tiny_cogvideox_pipeline, tiny_hunyuan_pipeline, tiny_wan_pipeline
from attnkit.testing.tiny_ltx import tiny_ltx_pipeline
from attnkit_lmp import LMPConfig, ReferenceBranch
from attnkit_lmp.families import (
    CogVideoXFamily,
    HunyuanVideoFamily,
    LTXVideoFamily,
    WanFamily,
    driven_pipelines,
    family_of,
    foreign_config_fields,
)
from attnkit_lmp.transfer import prepare_transfer

from .conftest import PROMPT, REFERENCE_PROMPT


@pytest.mark.parametrize(
    ("build", "variant", "family"),
    [
        (lambda: tiny_cogvideox_pipeline("t2v"), "t2v", CogVideoXFamily),
        (lambda: tiny_cogvideox_pipeline("i2v"), "i2v", CogVideoXFamily),
        (lambda: tiny_wan_pipeline("i2v"), "i2v", WanFamily),
        (tiny_hunyuan_pipeline, "t2v", HunyuanVideoFamily),
        (lambda: tiny_ltx_pipeline("i2v"), "i2v", LTXVideoFamily),
    ],
)
def test_each_driven_pipeline_maps_to_its_family_object(build, variant, family):
    found_variant, found = family_of(build())
    assert (found_variant, type(found)) == (variant, family)


def test_the_plan_carries_the_family_object():
    pipe = tiny_ltx_pipeline("t2v")
    config = LMPConfig.for_steps(2, height=32, width=32, num_frames=9, max_sequence_length=16)
    plan = prepare_transfer(pipe, None, REFERENCE_PROMPT, "dog", PROMPT, "cat", None, config)
    assert isinstance(plan.family, LTXVideoFamily)


def test_every_family_pipeline_is_listed_once():
    names = driven_pipelines()
    assert len(names) == len(set(names)) and {"LTXPipeline", "WanPipeline", "CogVideoXPipeline"} <= set(names)


def test_a_family_name_instead_of_the_object_is_refused_by_the_reference_branch():
    with pytest.raises(TypeError, match=r"family='wan' is not a model family object"):
        ReferenceBranch("wan", torch.zeros(1, 4), torch.zeros(1, 2, 8), clean_latents=torch.zeros(1, 4))


def test_fields_of_another_family_are_named_with_their_owner():
    config = LMPConfig(true_cfg_scale=2.0)
    assert foreign_config_fields(WanFamily(), config) == {"HunyuanVideo": {"true_cfg_scale": 1.0}}
    assert foreign_config_fields(HunyuanVideoFamily(), config) == {}


def test_training_noise_is_each_familys_forward_process():
    clean, noise = torch.full((3, 2, 4), 0.5), torch.full((3, 2, 4), -1.0)
    timesteps = torch.tensor([0, 400, 999])
    ddpm = tiny_cogvideox_pipeline("t2v").scheduler
    alpha_bar = ddpm.alphas_cumprod[timesteps].float().view(-1, 1, 1)
    expected = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
    torch.testing.assert_close(CogVideoXFamily().add_training_noise(ddpm, clean, noise, timesteps), expected)
    flow = tiny_wan_pipeline("t2v").scheduler
    sigma = (timesteps / flow.config.num_train_timesteps).view(-1, 1, 1)
    expected = (1 - sigma) * clean + sigma * noise
    torch.testing.assert_close(WanFamily().add_training_noise(flow, clean, noise, timesteps), expected)


def test_position_inputs_are_the_ones_the_pipeline_passes_its_transformer():
    cogvideox = tiny_cogvideox_pipeline("t2v")
    inputs = CogVideoXFamily().transformer_position_inputs(cogvideox, 32, 32, 9, "cpu")
    # 9 frames are 3 latent frames of the 4x temporal VAE.
    expected = cogvideox._prepare_rotary_positional_embeddings(32, 32, 3, "cpu")
    assert list(inputs) == ["image_rotary_emb"]
    assert all(torch.equal(got, want) for got, want in zip(inputs["image_rotary_emb"], expected))
    assert WanFamily().transformer_position_inputs(tiny_wan_pipeline("t2v"), 32, 32, 9, "cpu") == {}


def test_prompts_for_training_are_encoded_as_the_pipeline_encodes_them():
    pipe = tiny_cogvideox_pipeline("t2v")
    encoded = CogVideoXFamily().encode_prompts(pipe, [PROMPT, ""], 16, "cpu")
    expected, _ = pipe.encode_prompt([PROMPT, ""], do_classifier_free_guidance=False, max_sequence_length=16)
    assert encoded.shape == (2, 16, pipe.transformer.config.text_embed_dim)
    torch.testing.assert_close(encoded, expected, rtol=0, atol=0)
