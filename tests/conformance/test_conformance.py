"""Every adapter passes these: identity, restoration, probe exactness, extra-K/V semantics, layout."""

from __future__ import annotations

import pytest
import torch

import attnkit

from .plugins import DuplicateVideoKV, RaisesAtLayer, ReadOnlyProbe


def instrumentation_state(pipe):
    """What an attach may touch: processors, forward hooks, attributes of the transformer."""
    transformer = pipe.transformer
    processors = {name: id(processor) for name, processor in transformer.attn_processors.items()}
    return processors, len(transformer._forward_pre_hooks), len(transformer._forward_hooks), set(vars(transformer))


def test_attached_without_plugins_is_bit_identical(case, pipe):
    expected = case.run(pipe)
    with attnkit.attach(pipe):
        attached = case.run(pipe)
    assert torch.equal(attached, expected)


def test_attached_with_read_only_probe_is_bit_identical(case, pipe):
    expected = case.run(pipe)
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]) as session:
        attached = case.run(pipe)
    assert probe.calls == session.num_attention_modules * 2  # two denoising steps
    assert torch.equal(attached, expected)


def test_detach_restores_the_model(case, pipe):
    expected = case.run(pipe)  # first run: diffusers itself adds state to the transformer lazily
    before = instrumentation_state(pipe)
    with attnkit.attach(pipe, plugins=[ReadOnlyProbe()]):
        assert instrumentation_state(pipe) != before
        case.run(pipe)
    assert instrumentation_state(pipe) == before
    assert torch.equal(case.run(pipe), expected)


def test_exception_in_hook_names_plugin_and_restores_the_model(case, pipe):
    expected = case.run(pipe)  # first run: diffusers itself adds state to the transformer lazily
    before = instrumentation_state(pipe)
    with pytest.raises(attnkit.PluginError) as raised:
        with attnkit.attach(pipe, plugins=[RaisesAtLayer(layer=1)]):
            case.run(pipe)
    error = raised.value
    assert (error.plugin, error.hook, error.step) == ("raises-at-layer", "attnkit_qkv", 0)
    assert "transformer_blocks.1" in str(error) and "deliberate failure" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert instrumentation_state(pipe) == before
    assert torch.equal(case.run(pipe), expected)


def test_probe_slices_equal_naive_softmax(case, pipe):
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]):
        case.run(pipe)
    assert probe.slices
    for probed, naive in probe.slices:
        torch.testing.assert_close(probed, naive, atol=1e-5, rtol=0)


def test_duplicated_video_kv_doubles_video_key_weight(case, pipe):
    plugin = DuplicateVideoKV()
    with attnkit.attach(pipe, plugins=[plugin]) as session:
        case.run(pipe)
    assert plugin.checked == session.num_attention_modules * 2
    assert plugin.max_error < 1e-5


def test_layout_spans_and_grid_match_the_model(case, pipe):
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]):
        case.run(pipe)
    frames, height, width = case.expected_grid
    for layout in probe.layouts:
        assert layout.role == "joint"
        assert layout.grid == case.expected_grid
        assert layout.text == slice(0, case.text_tokens)
        assert layout.video == slice(case.text_tokens, case.text_tokens + frames * height * width)


def test_steps_follow_the_scheduler_timesteps(case, pipe):
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]):
        case.run(pipe)
    timesteps = [float(t) for t in pipe.scheduler.timesteps]
    assert probe.steps == list(enumerate(timesteps))


def test_classifier_free_guidance_rows_are_named(case, pipe):
    seen = []

    class BranchSpy:
        @attnkit.hookimpl
        def attnkit_qkv(self, call):
            seen.append(dict(call.branches))

    with attnkit.attach(pipe, plugins=[BranchSpy()]):
        case.run(pipe)
    assert seen and all(branches == {"uncond": [0], "cond": [1]} for branches in seen)
