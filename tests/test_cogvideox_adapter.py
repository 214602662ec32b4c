"""The CogVideoX adapter beyond the conformance suite: a mask passed through attention_kwargs, and a
processor it does not reproduce."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.testing import TINY_CALL_KWARGS, tiny_cogvideox_pipeline
from conformance.plugins import ReadOnlyProbe  # tests/ has no __init__.py, so pytest puts it on sys.path


def run(pipe, **call_kwargs):
    return pipe(
        prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **dict(TINY_CALL_KWARGS, **call_kwargs)
    ).frames


def key_mask(pipe) -> torch.Tensor:
    """An additive (2, 1, N) mask (uncond and cond rows) hiding the last text token and the last video token
    from every query."""
    text = TINY_CALL_KWARGS["max_sequence_length"]
    grid = (3, 4, 4)  # 9 frames of 32 x 32 px: 3 latent frames of 4 x 4 patches
    tokens = text + grid[0] * grid[1] * grid[2]
    mask = torch.zeros(2, 1, tokens)
    mask[..., [text - 1, tokens - 1]] = float("-inf")
    return mask


def test_a_mask_through_attention_kwargs_is_applied_and_output_stays_bit_identical():
    pipe = tiny_cogvideox_pipeline("t2v")
    mask = key_mask(pipe)
    expected = run(pipe, attention_kwargs={"attention_mask": mask})
    assert not torch.equal(expected, run(pipe))  # the mask changes the model's output
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]):
        attached = run(pipe, attention_kwargs={"attention_mask": mask})
    assert torch.equal(attached, expected)
    assert probe.masked_calls > 0 and probe.masked_key_mass == 0.0
    for probed, naive in probe.slices:
        torch.testing.assert_close(probed, naive, atol=1e-5, rtol=0)


def test_a_processor_it_does_not_reproduce_is_refused_as_unsupported():
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe = tiny_cogvideox_pipeline("t2v")
    pipe.transformer.transformer_blocks[1].attn1.processor = AttnProcessor2_0()
    before = {name: id(processor) for name, processor in pipe.transformer.attn_processors.items()}
    with pytest.raises(attnkit.UnsupportedModelError, match=r"transformer_blocks\.1\.attn1 uses AttnProcessor2_0"):
        with attnkit.attach(pipe, plugins=[ReadOnlyProbe()]):
            pass
    assert {name: id(processor) for name, processor in pipe.transformer.attn_processors.items()} == before
