"""Session behaviour beyond the conformance contracts: errors, branches, added rows, hidden-state edits."""

from __future__ import annotations

import pluggy
import pytest
import torch

import attnkit
from attnkit.adapters.cogvideox import CogVideoXAdapter
from attnkit.testing.tiny_models import TINY_CALL_KWARGS, tiny_cogvideox_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_cogvideox_pipeline("t2v")


def run(pipe, seed=0, **overrides):
    kwargs = dict(TINY_CALL_KWARGS, **overrides)
    return pipe(prompt="a red dog runs", generator=torch.Generator().manual_seed(seed), **kwargs).frames


class OnQKV:
    """A plugin whose attnkit_qkv runs ``function(call)``."""

    def __init__(self, function, name="on-qkv"):
        self.function, self.name = function, name

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        return self.function(call)


def test_attaching_twice_is_a_clear_error_and_keeps_the_first_session(pipe):
    with attnkit.attach(pipe):
        with pytest.raises(attnkit.AlreadyAttachedError, match="already has an active attnkit session"):
            with attnkit.attach(pipe):
                pass
        assert pipe.transformer._attnkit_session is not None
    assert not hasattr(pipe.transformer, "_attnkit_session")


def test_unsupported_model_lists_supported_classes_and_how_to_register():
    with pytest.raises(attnkit.UnsupportedModelError) as raised:
        with attnkit.attach(torch.nn.Linear(2, 2)):
            pass
    message = str(raised.value)
    assert "Linear" in message and "CogVideoXTransformer3DModel" in message
    assert "attnkit_register_adapters" in message


def test_a_plugin_adapter_is_asked_before_the_builtin(pipe):
    class MyAdapter(CogVideoXAdapter):
        name = "mine"

    class Registers:
        @attnkit.hookimpl
        def attnkit_register_adapters(self, register):
            register(MyAdapter)

    with attnkit.attach(pipe, plugins=[Registers()]) as session:
        assert type(session.adapter) is MyAdapter


def test_misspelt_hook_implementation_is_an_error(pipe):
    class Misspelt:
        @attnkit.hookimpl
        def attnkit_qvk(self, call):
            pass

    with pytest.raises(pluggy.PluginValidationError, match="attnkit_qvk"):
        with attnkit.attach(pipe, plugins=[Misspelt()]):
            pass


def test_a_wrapper_on_a_per_call_hook_wraps_the_plain_ones(pipe):
    events = []

    class Wraps:
        @attnkit.hookimpl(wrapper=True)
        def attnkit_qkv(self, call):
            events.append("before")
            result = yield
            events.append("after")
            return result

    with attnkit.attach(pipe, plugins=[OnQKV(lambda call: events.append("plain")), Wraps()]):
        run(pipe)
    assert events[:3] == ["before", "plain", "after"]
    assert not hasattr(pipe.transformer, "_attnkit_session")


def test_a_blocked_plugin_passed_explicitly_is_an_error_not_silently_dropped(pipe, monkeypatch):
    calls = []
    plugin = OnQKV(lambda call: calls.append(call.layer), name="noisy")
    monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", "other, noisy")
    with pytest.raises(attnkit.PluginError, match=r"'noisy' was passed to attach\(\) but ATTNKIT_BLOCK_PLUGINS"):
        with attnkit.attach(pipe, plugins=[plugin]):
            run(pipe)
    assert calls == [] and not hasattr(pipe.transformer, "_attnkit_session")


def test_disabling_autoload_skips_entry_points(pipe, monkeypatch):
    loaded = []
    monkeypatch.setattr(attnkit.plugins, "load_entry_point_plugins", lambda manager, group: loaded.append(group))
    with attnkit.attach(pipe):
        pass
    monkeypatch.setenv("ATTNKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    with attnkit.attach(pipe):
        pass
    assert loaded == ["attnkit"]


def test_extra_kv_with_wrong_shape_names_plugin_and_expected_shape(pipe):
    class BadExtra:
        name = "bad-extra"

        @attnkit.hookimpl
        def attnkit_extra_kv(self, call):
            key = torch.zeros(1, call.q.shape[1] + 1, 3, call.q.shape[3])
            return attnkit.ExtraKV(key=key, value=key, rows=[0])

    with pytest.raises(attnkit.PluginError) as raised:
        with attnkit.attach(pipe, plugins=[BadExtra()]):
            run(pipe)
    config = pipe.transformer.config
    message = str(raised.value)
    expected_shape = f"expected (1, {config.num_attention_heads}, M, {config.attention_head_dim})"
    assert "'bad-extra'" in message and expected_shape in message
    assert raised.value.hook == "attnkit_extra_kv"


def test_probe_after_kept_share_extra_keys_gives_the_weights_the_kernel_used(pipe):
    """With extra keys that compete only with the video keys, the prompt keys keep their plain weights and the
    probe reads each key with the normaliser its group had in the kernel."""
    errors = []

    class CondSeesUncond:
        name = "cond-sees-uncond"

        @attnkit.hookimpl
        def attnkit_extra_kv(self, call):
            uncond = call.rows("uncond")
            return attnkit.ExtraKV(
                key=call.video(call.k[uncond]), value=call.video(call.v[uncond]), rows=call.rows("cond"),
                query_tokens=call.layout.video, competes_with=call.layout.video,
            )

        @attnkit.hookimpl
        def attnkit_attention_output(self, call, output):
            cond = call.rows("cond")
            q, k = call.q[cond][:, :, call.layout.video], call.k[cond]
            uncond_video = call.video(call.k[call.rows("uncond")])
            scores = q @ torch.cat([k, uncond_video], dim=2).transpose(-1, -2) * call.softmax_scale
            text = call.layout.text
            plain_text = torch.softmax(scores[..., : k.shape[2]], dim=-1)[..., text]
            video_mass = 1 - plain_text.sum(-1, keepdim=True)
            union = torch.softmax(scores[..., text.stop :], dim=-1) * video_mass
            expected = torch.cat([plain_text, union[..., : k.shape[2] - text.stop]], dim=-1)
            probs = call.attention_probs("video", slice(None), branch="cond", heads="all")
            errors.append((probs - expected).abs().max().item())

    with attnkit.attach(pipe, plugins=[CondSeesUncond()]):
        run(pipe)
    assert errors and max(errors) < 1e-5


def test_extra_keys_that_compete_with_no_own_key_are_refused_naming_the_plugin(pipe):
    class CompetesWithNothing:
        name = "competes-with-nothing"

        @attnkit.hookimpl
        def attnkit_extra_kv(self, call):
            return attnkit.ExtraKV(key=call.k[:1], value=call.v[:1], rows=[0], competes_with=[])

    with pytest.raises(attnkit.PluginError, match="'competes-with-nothing'.*competes_with selects none of the"):
        with attnkit.attach(pipe, plugins=[CompetesWithNothing()]):
            run(pipe)


def test_probe_out_of_range_reports_the_valid_range(pipe):
    plugin = OnQKV(lambda call: call.attention_probs([0, 999], "video"), name="probe")
    with pytest.raises(attnkit.PluginError) as raised:
        with attnkit.attach(pipe, plugins=[plugin]):
            run(pipe)
    assert isinstance(raised.value.__cause__, IndexError)
    assert "valid indices 0..63" in str(raised.value)


def test_probe_before_the_kernel_uses_chunked_logsumexp_and_is_exact(pipe):
    errors = []

    def check(call):
        probs = call.attention_probs("text", [20, 40], branch="cond", heads="all")
        full = torch.softmax(call.q @ call.k.transpose(-1, -2) * call.softmax_scale, dim=-1)
        errors.append((probs - full[call.rows("cond")][:, :, :16][..., [20, 40]]).abs().max().item())

    with attnkit.attach(pipe, plugins=[OnQKV(check)]):
        run(pipe)
    assert errors and max(errors) < 1e-5


def test_changing_qkv_shape_is_refused(pipe):
    def shrink(call):
        call.q = call.q[:, :1]

    with pytest.raises(attnkit.PluginError, match=r"'on-qkv' in attnkit_qkv at layer 0 .*call.q is \(2, 1, 64, 16\)"):
        with attnkit.attach(pipe, plugins=[OnQKV(shrink)]):
            run(pipe)


def test_rewriting_values_changes_the_output(pipe):
    expected = run(pipe)

    def zero_values(call):
        call.v = torch.zeros_like(call.v)

    with attnkit.attach(pipe, plugins=[OnQKV(zero_values)]):
        rewritten = run(pipe)
    assert not torch.allclose(rewritten, expected)


def test_two_plugins_replacing_the_output_is_an_error(pipe):
    class Replaces:
        def __init__(self, name):
            self.name = name

        @attnkit.hookimpl
        def attnkit_attention_output(self, call, output):
            return output * 1.0

    with pytest.raises(attnkit.PluginError, match="only one may"):
        with attnkit.attach(pipe, plugins=[Replaces("a"), Replaces("b")]):
            run(pipe)


def test_output_replacement_of_wrong_shape_is_an_error(pipe):
    class WrongShape:
        name = "wrong-shape"

        @attnkit.hookimpl
        def attnkit_attention_output(self, call, output):
            return output[:, :1]

    with pytest.raises(attnkit.PluginError, match=r"returned output is \(2, 1, 64, 16\).*expected \(2, 2, 64, 16\)"):
        with attnkit.attach(pipe, plugins=[WrongShape()]):
            run(pipe)


def test_branches_can_be_named_by_the_caller(pipe):
    seen = []
    spy = OnQKV(lambda call: seen.append(call.branches))
    with attnkit.attach(pipe, plugins=[spy], branches=lambda batch: {"negative": [0], "positive": [1]}):
        run(pipe)
    assert seen[0] == {"negative": [0], "positive": [1]}
    with pytest.raises(ValueError, match="outside the batch of 2"):
        with attnkit.attach(pipe, branches={"cond": [5]}):
            run(pipe)


def test_without_guidance_all_rows_are_cond(pipe):
    seen = []
    with attnkit.attach(pipe, plugins=[OnQKV(lambda call: seen.append(call.branches))]):
        run(pipe, guidance_scale=1.0)
    assert seen[0] == {"cond": [0]}


class AddsReferenceRow:
    """Appends a copy of the cond row as branch "reference" and keeps what the model predicted for it."""

    name = "adds-reference"

    def __init__(self):
        self.outputs = []
        self.branches = []

    @attnkit.hookimpl
    def attnkit_model_inputs(self, session, inputs):
        cond = session.branches["cond"]
        inputs.add_rows("reference", inputs.latents[cond], inputs.encoder_hidden_states[cond])

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.branches.append(dict(call.branches))

    @attnkit.hookimpl
    def attnkit_model_output(self, session, outputs):
        self.outputs.append(outputs)


def test_added_rows_are_seen_by_plugins_and_stripped_from_the_pipeline(pipe):
    expected = run(pipe)
    plugin = AddsReferenceRow()
    with attnkit.attach(pipe, plugins=[plugin]):
        frames = run(pipe)
    assert plugin.branches[0] == {"uncond": [0], "cond": [1], "reference": [2]}
    assert frames.shape == expected.shape
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=0)
    for outputs in plugin.outputs:
        torch.testing.assert_close(outputs["reference"], outputs["cond"], atol=1e-5, rtol=0)


def test_hidden_states_can_take_a_gradient_step_through_project(pipe):
    expected = run(pipe)
    gradient_norms = []

    class GradientStep:
        name = "gradient-step"

        @attnkit.hookimpl
        def attnkit_before_attention(self, call):
            with torch.enable_grad():
                video = call.video(call.hidden_states).detach().requires_grad_()
                states = torch.cat([call.text(call.hidden_states), video], dim=1)
                q, k, _ = call.project(states)
                loss = (call.video(q) * call.video(k)).sum()
                (gradient,) = torch.autograd.grad(loss, video)
            gradient_norms.append(gradient.norm().item())
            call.hidden_states = torch.cat([call.text(call.hidden_states), video.detach() - 1e-3 * gradient], dim=1)

    with attnkit.attach(pipe, plugins=[GradientStep()]):
        edited = run(pipe)
    assert all(norm > 0 for norm in gradient_norms)
    assert not torch.allclose(edited, expected)
    assert all(parameter.grad is None for parameter in pipe.transformer.parameters())
