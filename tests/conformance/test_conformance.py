"""Every adapter passes these: identity, restoration, probe exactness, extra-K/V semantics, layout."""

from __future__ import annotations

import pytest
import torch

import attnkit

from attnkit.layout import ROLES

from .plugins import DuplicateVideoKV, RaisesAtLayer, ReadOnlyProbe, RoleSpy


def attention_calls(case, session) -> int:
    """Attention calls of one two-step pipeline run: every module, every forward of every step."""
    return session.num_attention_modules * 2 * case.forwards_per_step


def instrumentation_state(pipe):
    """What an attach may touch: processors, forward hooks, attributes of each transformer (two in Wan 2.2)."""
    state = []
    for transformer in (pipe.transformer, getattr(pipe, "transformer_2", None)):
        if transformer is None:
            continue
        processors = {name: id(processor) for name, processor in transformer.attn_processors.items()}
        hooks = (len(transformer._forward_pre_hooks), len(transformer._forward_hooks))
        state.append((processors, hooks, set(vars(transformer))))
    return state


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
    assert probe.calls == attention_calls(case, session)
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
    plugin = RaisesAtLayer(layer=1)
    with pytest.raises(attnkit.PluginError) as raised:
        with attnkit.attach(pipe, plugins=[plugin]):
            case.run(pipe)
    error = raised.value
    assert (error.plugin, error.hook, error.step) == ("raises-at-layer", "attnkit_qkv", 0)
    assert plugin.raised_in and plugin.raised_in in str(error) and "deliberate failure" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert instrumentation_state(pipe) == before
    assert torch.equal(case.run(pipe), expected)


def test_probe_slices_equal_naive_softmax(case, pipe):
    """Across every query and key span, per softmax group, with the model's mask applied."""
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]):
        case.run(pipe)
    assert probe.slices
    for probed, naive in probe.slices:
        torch.testing.assert_close(probed, naive, atol=1e-5, rtol=0)


def test_padded_text_keys_are_masked_in_probe_and_kernel(case, pipe):
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]):
        case.run(pipe)
    if case.text_padding:
        assert probe.masked_calls > 0, "the model pads text, but no attention call carried a mask"
        assert probe.masked_key_mass == 0.0
    else:
        assert probe.masked_calls == 0


def test_duplicated_video_kv_doubles_video_key_weight(case, pipe):
    plugin = DuplicateVideoKV()
    with attnkit.attach(pipe, plugins=[plugin]) as session:
        case.run(pipe)
    assert plugin.checked == attention_calls(case, session)
    assert plugin.max_error < 1e-5


def test_layout_spans_and_grid_match_the_model(case, pipe):
    probe = ReadOnlyProbe()
    with attnkit.attach(pipe, plugins=[probe]) as session:
        case.run(pipe)
    assert all(layout in case.expected_layouts for layout in probe.layouts), set(map(repr, probe.layouts))
    assert all(expected in probe.layouts for expected in case.expected_layouts)
    assert case.roles == set(session.adapter.roles)


def test_plugins_are_called_only_for_the_roles_they_declare(case, pipe):
    spies = [RoleSpy({role}) for role in sorted(case.roles)]
    with attnkit.attach(pipe, plugins=spies) as session:
        case.run(pipe)
    assert sum(len(spy.seen) for spy in spies) == attention_calls(case, session)
    for spy in spies:
        assert spy.seen and set(spy.seen) == spy.attnkit_roles


def test_a_plugin_for_roles_the_model_lacks_is_refused_at_attach(case, pipe):
    missing = set(ROLES) - case.roles
    before = instrumentation_state(pipe)
    with pytest.raises(attnkit.UnsupportedRoleError) as raised:
        with attnkit.attach(pipe, plugins=[RoleSpy(missing)]):
            pass
    assert type(pipe.transformer).__name__ in str(raised.value)
    assert all(role in str(raised.value) for role in missing)
    assert instrumentation_state(pipe) == before


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

    with attnkit.attach(pipe, plugins=[BranchSpy()]) as session:
        case.run(pipe)
    calls_per_forward = session.num_attention_modules
    per_forward = [seen[start] for start in range(0, len(seen), calls_per_forward)]
    assert per_forward == list(case.forward_branches) * 2  # two denoising steps
    assert all(seen[i] == per_forward[i // calls_per_forward] for i in range(len(seen)))
