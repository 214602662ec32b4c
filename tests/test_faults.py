"""Faults of the core session that used to give a raw torch error or a silently wrong result.

Each names the plugin, hook, layer and step, or labels steps and branches correctly, or refuses clearly.
"""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.testing import TINY_CALL_KWARGS, WAN_CALL_KWARGS, tiny_cogvideox_pipeline, tiny_wan_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_cogvideox_pipeline("t2v")


def run(pipe, **overrides):
    kwargs = dict(TINY_CALL_KWARGS, **overrides)
    return pipe(prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **kwargs).frames


def qkv_plugin(function, name="bad-plugin"):
    class Plugin:
        @attnkit.hookimpl
        def attnkit_qkv(self, call):
            return function(call)

    plugin = Plugin()
    plugin.name = name
    return plugin


def before_plugin(function, name="bad-plugin"):
    class Plugin:
        @attnkit.hookimpl
        def attnkit_before_attention(self, call):
            function(call)

    plugin = Plugin()
    plugin.name = name
    return plugin


def output_plugin(function, name="bad-plugin"):
    class Plugin:
        @attnkit.hookimpl
        def attnkit_attention_output(self, call, output):
            return function(call, output)

    plugin = Plugin()
    plugin.name = name
    return plugin


def extra_plugin(function, name="bad-plugin"):
    class Plugin:
        @attnkit.hookimpl
        def attnkit_extra_kv(self, call):
            return function(call)

    plugin = Plugin()
    plugin.name = name
    return plugin


def own_video_kv(call, **fields):
    return attnkit.ExtraKV(key=call.video(call.k)[:1], value=call.video(call.v)[:1], rows=[0], **fields)


WHERE = r"plugin 'bad-plugin' in {hook} at layer 0 \(transformer_blocks\.0\.attn1\), step 0: "


@pytest.mark.parametrize(
    "plugin, hook, message",
    [
        (output_plugin(lambda call, output: output.double()), "attnkit_attention_output", "torch.float64"),
        (output_plugin(lambda call, output: output.to("meta")), "attnkit_attention_output", "on meta"),
        (before_plugin(lambda call: setattr(call, "hidden_states", call.hidden_states[:, :3])),
         "attnkit_before_attention", r"call.hidden_states is \(2, 3, 32\)"),
        (qkv_plugin(lambda call: setattr(call, "k", call.k.half())), "attnkit_qkv", r"call.k is .*torch.float16"),
        (qkv_plugin(lambda call: setattr(call, "v", None)), "attnkit_qkv", "call.v is NoneType"),
        (extra_plugin(lambda call: own_video_kv(call, query_tokens=[0, 10_000])), "attnkit_extra_kv",
         r"query_tokens 0\.\.10000 out of range"),
        (extra_plugin(lambda call: own_video_kv(call, score_bias=torch.zeros(3, 5))), "attnkit_extra_kv",
         r"score_bias has shape \(3, 5\)"),
    ],
    ids=["output-dtype", "output-device", "hidden-shape", "qkv-dtype", "qkv-none", "query-tokens", "score-bias"],
)
def test_a_bad_plugin_return_is_a_plugin_error_naming_plugin_hook_layer_and_step(pipe, plugin, hook, message):
    with pytest.raises(attnkit.PluginError, match=WHERE.format(hook=hook) + ".*" + message) as raised:
        with attnkit.attach(pipe, plugins=[plugin]):
            run(pipe)
    assert (raised.value.plugin, raised.value.hook, raised.value.step) == ("bad-plugin", hook, 0)
    assert raised.value.layer == "transformer_blocks.0.attn1"
    assert not hasattr(pipe.transformer, "_attnkit_session")


def test_an_adapter_registration_hook_that_raises_is_named(pipe):
    class Broken:
        name = "broken-adapters"

        @attnkit.hookimpl
        def attnkit_register_adapters(self, register):
            raise RuntimeError("cannot import my model")

    with pytest.raises(attnkit.PluginError, match=r"'broken-adapters' raised in attnkit_register_adapters.*cannot import"):
        with attnkit.attach(pipe, plugins=[Broken()]):
            pass
    assert not hasattr(pipe.transformer, "_attnkit_session")


# --- the finiteness check ---------------------------------------------------------------------------------


def test_nan_from_a_plugin_passes_without_the_check_and_is_named_with_it(pipe):
    def poison(call):
        if call.step == 1 and call.layer == 1:
            call.q = torch.full_like(call.q, float("nan"))

    with attnkit.attach(pipe, plugins=[qkv_plugin(poison, "poisoner")]):
        frames = run(pipe, output_type="pt")
    assert torch.isnan(frames).any()  # what the check is for: nothing stops this run
    with pytest.raises(attnkit.NonFiniteError, match=r"plugin 'poisoner' in attnkit_qkv at layer 1 .*step 1") as raised:
        with attnkit.attach(pipe, plugins=[qkv_plugin(poison, "poisoner")], check_finite=True):
            run(pipe)
    assert (raised.value.plugin, raised.value.hook, raised.value.step) == ("poisoner", "attnkit_qkv", 1)


def test_an_overflow_downstream_of_a_plugin_names_that_plugin_as_the_last_edit(pipe):
    def huge(call):
        if call.step == 0 and call.layer == 0:
            call.hidden_states = call.hidden_states * 1e38

    with pytest.raises(attnkit.NonFiniteError, match=r"layer 0 .*step 0 holds inf or NaN.*'bigger'") as raised:
        with attnkit.attach(pipe, plugins=[before_plugin(huge, "bigger")], check_finite=True):
            run(pipe)
    assert raised.value.plugin is None and raised.value.step == 0


def test_an_infinite_guidance_scale_is_reported_at_the_step_whose_latents_it_broke(pipe):
    with pytest.raises(attnkit.NonFiniteError, match=r"latents passed to the transformer at step 1 .*no plugin"):
        with attnkit.attach(pipe, check_finite=True):
            run(pipe, guidance_scale=float("inf"))


def test_the_check_leaves_a_finite_run_unchanged(pipe):
    with attnkit.attach(pipe, plugins=[qkv_plugin(lambda call: None, "reader")]):
        plain = run(pipe, output_type="pt")
    with attnkit.attach(pipe, plugins=[qkv_plugin(lambda call: None, "reader")], check_finite=True):
        checked = run(pipe, output_type="pt")
    assert torch.equal(plain, checked)


# --- steps and branches -------------------------------------------------------------------------------------


class StepLog:
    name = "step-log"

    def __init__(self):
        self.seen: list[tuple[int, tuple[str, ...]]] = []

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        if call.layer == 0:
            self.seen.append((call.step, tuple(sorted(call.branches))))


def test_a_session_entered_twice_counts_steps_from_zero_again(pipe):
    log = StepLog()
    session = attnkit.attach(pipe, plugins=[log])
    with session:
        run(pipe)
    first = list(log.seen)
    log.seen.clear()
    with session:
        run(pipe)
    assert log.seen == first and first[0][0] == 0


def test_two_one_step_wan_calls_label_each_calls_branches():
    wan = tiny_wan_pipeline("t2v")
    log = StepLog()
    kwargs = dict(WAN_CALL_KWARGS, num_inference_steps=1, guidance_scale=5.0)
    with attnkit.attach(wan, plugins=[log]):
        for _ in range(2):
            wan(prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **kwargs)
    assert log.seen == [(0, ("cond",)), (0, ("uncond",)), (1, ("cond",)), (1, ("uncond",))]


def test_a_shared_transformer_run_by_another_pipeline_is_refused_not_labelled_from_the_attached_one(pipe):
    from diffusers import CogVideoXPipeline

    run(pipe, guidance_scale=1.0)  # the attached pipeline has run, without guidance
    other = CogVideoXPipeline(**pipe.components)  # shares the transformer
    with attnkit.attach(pipe, plugins=[StepLog()]):
        with pytest.raises(ValueError, match="outside the attached CogVideoXPipeline's denoising loop"):
            run(other, guidance_scale=6.0)


def test_a_failing_session_end_plugin_does_not_hide_the_bodys_error(pipe):
    class FailsAtEnd:
        name = "fails-at-end"

        @attnkit.hookimpl
        def attnkit_session_end(self):
            raise RuntimeError("could not flush")

    with pytest.raises(KeyError, match="the body's own error") as raised:
        with attnkit.attach(pipe, plugins=[FailsAtEnd()]):
            raise KeyError("the body's own error")
    assert any("'fails-at-end' raised in attnkit_session_end" in note for note in raised.value.__notes__)
    assert not hasattr(pipe.transformer, "_attnkit_session")
    with pytest.raises(attnkit.PluginError, match="could not flush"):  # alone, the plugin's error is raised
        with attnkit.attach(pipe, plugins=[FailsAtEnd()]):
            pass


def test_a_shared_wan_transformer_run_by_another_pipeline_is_refused():
    from diffusers import WanPipeline

    wan = tiny_wan_pipeline("t2v")
    kwargs = dict(WAN_CALL_KWARGS, num_inference_steps=1)
    wan(prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **{**kwargs, "guidance_scale": 1.0})
    other = WanPipeline(**wan.components)  # shares the transformer, runs guidance as a second forward
    with attnkit.attach(wan, plugins=[StepLog()]):
        with pytest.raises(ValueError, match="outside the attached WanPipeline's denoising loop"):
            other(prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **{**kwargs, "guidance_scale": 5.0})


def test_checking_an_output_folder_creates_nothing_and_refuses_a_file_in_the_way(tmp_path):
    from attnkit_lmp.loading import InputError, check_writable

    check_writable(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not writable"):
        check_writable(tmp_path / "file" / "out")
