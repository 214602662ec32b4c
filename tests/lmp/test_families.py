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
