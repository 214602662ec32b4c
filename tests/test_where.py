"""Plugin gates (``attnkit_where``): a gated plugin's per-attention hooks fire only inside its gate, an
ungated one everywhere; the gates are asked once per attention call; pluggy's order and wrappers stay."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.testing.tiny_models import TINY_CALL_KWARGS, tiny_cogvideox_pipeline
from attnkit.testing.tiny_wan import WAN_CALL_KWARGS, tiny_wan_pipeline

STEPS = TINY_CALL_KWARGS["num_inference_steps"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_cogvideox_pipeline("t2v")


def run(pipe, kwargs=TINY_CALL_KWARGS):
    return pipe(prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **kwargs).frames


class Seen:
    """Notes (hook, step, layer, role) of every per-attention hook call it gets."""

    def __init__(self, where=None, name="seen"):
        self.name = name
        if where is not None:
            self.attnkit_where = where
        self.calls = []

    def note(self, hook, call):
        self.calls.append((hook, call.step, call.layer, call.layout.role))

    @attnkit.hookimpl
    def attnkit_before_attention(self, call):
        self.note("before_attention", call)

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.note("qkv", call)

    @attnkit.hookimpl
    def attnkit_extra_kv(self, call):
        self.note("extra_kv", call)

    @attnkit.hookimpl
    def attnkit_attention_output(self, call):
        self.note("attention_output", call)

    def steps(self):
        return {step for _, step, _, _ in self.calls}

    def layers(self):
        return {layer for _, _, layer, _ in self.calls}


class AddsReference:
    name = "adds-reference"

    @attnkit.hookimpl
    def attnkit_model_inputs(self, session, inputs):
        cond = session.branches["cond"]
        inputs.add_rows("reference", inputs.latents[cond], inputs.encoder_hidden_states[cond])


def test_a_plugin_without_a_gate_is_called_for_every_attention_call_and_hook(pipe):
    seen = Seen()
    with attnkit.attach(pipe, plugins=[seen]) as session:
        run(pipe)
    calls = STEPS * session.num_attention_modules
    assert len(seen.calls) == 4 * calls
    assert seen.steps() == set(range(STEPS)) and seen.layers() == set(range(session.num_attention_modules))


def test_a_step_gate_leaves_the_plugin_out_of_later_steps(pipe):
    seen = Seen(attnkit.Where(steps=range(1)))
    with attnkit.attach(pipe, plugins=[seen]) as session:
        run(pipe)
    assert seen.steps() == {0} and len(seen.calls) == 4 * session.num_attention_modules


def test_a_layer_gate_leaves_the_plugin_out_of_other_layers(pipe):
    seen = Seen(attnkit.Where(layers={1}))
    with attnkit.attach(pipe, plugins=[seen]):
        run(pipe)
    assert seen.layers() == {1} and seen.steps() == set(range(STEPS))


def test_a_branch_gate_fires_only_where_the_batch_holds_that_branch(pipe):
    gated = Seen(attnkit.Where(branches=("reference",)))
    with attnkit.attach(pipe, plugins=[gated]):
        run(pipe)
    assert gated.calls == []
    gated = Seen(attnkit.Where(branches=("reference", "cond")))
    with attnkit.attach(pipe, plugins=[gated, AddsReference()]) as session:
        run(pipe)
    assert len(gated.calls) == 4 * STEPS * session.num_attention_modules


def test_a_role_gate_fires_only_for_calls_of_its_roles():
    wan = tiny_wan_pipeline("t2v")
    gated, everywhere = Seen(attnkit.Where(roles={"self"}), name="self-only"), Seen(name="everywhere")
    with attnkit.attach(wan, plugins=[gated, everywhere]):
        run(wan, WAN_CALL_KWARGS)
    assert {role for *_, role in everywhere.calls} == {"self", "cross"}
    assert {role for *_, role in gated.calls} == {"self"}
    assert len(gated.calls) == len(everywhere.calls) / 2


def test_a_role_gate_with_no_role_of_the_model_is_refused_at_attach(pipe):
    with pytest.raises(attnkit.UnsupportedRoleError, match=r"handles only \['self'\]"):
        with attnkit.attach(pipe, plugins=[Seen(attnkit.Where(roles="self"))]):
            pass
    assert not hasattr(pipe.transformer, "_attnkit_session")


def test_all_parts_of_a_gate_must_hold(pipe):
    seen = Seen(attnkit.Where(roles={"joint"}, layers={0}, steps={1}))
    with attnkit.attach(pipe, plugins=[seen]):
        run(pipe)
    assert {(step, layer) for _, step, layer, _ in seen.calls} == {(1, 0)} and len(seen.calls) == 4


def test_a_gate_leaves_the_session_and_step_hooks_alone(pipe):
    class StepsAndCalls(Seen):
        def __init__(self):
            super().__init__(attnkit.Where(steps=range(0)), name="steps-and-calls")
            self.step_starts = []

        @attnkit.hookimpl
        def attnkit_step_start(self, step):
            self.step_starts.append(step)

    plugin = StepsAndCalls()
    with attnkit.attach(pipe, plugins=[plugin]):
        run(pipe)
    assert plugin.calls == [] and plugin.step_starts == list(range(STEPS))


def test_the_gates_are_asked_once_per_attention_call(pipe, monkeypatch):
    asked = []
    admits = attnkit.Where.admits
    monkeypatch.setattr(attnkit.Where, "admits", lambda where, call: asked.append(call) or admits(where, call))
    seen = Seen(attnkit.Where(layers={0}))
    with attnkit.attach(pipe, plugins=[seen]) as session:
        run(pipe)
    assert len(asked) == STEPS * session.num_attention_modules
    assert len({id(call) for call in asked}) == len(asked)


def test_a_gated_plugin_keeps_its_place_in_pluggys_order(pipe):
    order = []

    class Named:
        def __init__(self, name, where=None):
            self.name = name
            if where is not None:
                self.attnkit_where = where

        @attnkit.hookimpl
        def attnkit_qkv(self, call):
            if call.step == 0 and call.layer == 0:
                order.append(self.name)

    class First(Named):
        @attnkit.hookimpl(tryfirst=True)
        def attnkit_qkv(self, call):
            super().attnkit_qkv(call)

    plugins = [First("first"), Named("registered-first", attnkit.Where(steps={0})), Named("registered-last")]
    with attnkit.attach(pipe, plugins=plugins):
        run(pipe)
    # pluggy: tryfirst first, then the last registered before the earlier ones.
    assert order == ["first", "registered-last", "registered-first"]


def test_a_wrapper_wraps_the_plain_implementations_and_sees_their_results(pipe):
    events = []

    class Extra:
        name = "extra"

        @attnkit.hookimpl
        def attnkit_extra_kv(self, call):
            events.append("plain")
            return attnkit.ExtraKV(key=call.k[:1, :, :1], value=call.v[:1, :, :1], rows=[0])

    class Wraps:
        name = "wraps"
        attnkit_where = attnkit.Where(steps={0}, layers={0})

        @attnkit.hookimpl(wrapper=True)
        def attnkit_extra_kv(self, call):
            events.append("before")
            results = yield
            events.append(("after", len(results)))
            return []  # a wrapper may drop what the plain implementations returned

    with attnkit.attach(pipe, plugins=[Extra(), Wraps()]) as session:
        run(pipe)
    calls = STEPS * session.num_attention_modules
    assert events[:3] == ["before", "plain", ("after", 1)]
    assert events.count("before") == 1 and events.count("plain") == calls
    # The kernel took the extra keys, credited to the plugin that returned them, in every call but the
    # one whose wrapper dropped them.
    assert session.activity["extra"]["calls"] == calls - 1


def test_an_error_in_a_wrapper_names_the_wrapper(pipe):
    class Raises:
        name = "raising-wrapper"

        @attnkit.hookimpl(wrapper=True)
        def attnkit_qkv(self, call):
            yield
            raise RuntimeError("after the plain ones")

    with pytest.raises(attnkit.PluginError, match="'raising-wrapper' raised in attnkit_qkv at layer 0") as raised:
        with attnkit.attach(pipe, plugins=[Raises()]):
            run(pipe)
    assert (raised.value.plugin, raised.value.hook, raised.value.step) == ("raising-wrapper", "attnkit_qkv", 0)
    assert not hasattr(pipe.transformer, "_attnkit_session")


def test_a_wrapper_sees_a_plain_implementations_error_named(pipe):
    caught = []

    class Broken:
        name = "broken"

        @attnkit.hookimpl
        def attnkit_qkv(self, call):
            raise ValueError("bad")

    class Watches:
        name = "watches"

        @attnkit.hookimpl(wrapper=True)
        def attnkit_qkv(self, call):
            try:
                return (yield)
            except attnkit.PluginError as error:
                caught.append(error.plugin)
                raise

    with pytest.raises(attnkit.PluginError, match="'broken' raised in attnkit_qkv"):
        with attnkit.attach(pipe, plugins=[Broken(), Watches()]):
            run(pipe)
    assert caught == ["broken"]


def test_a_wrappers_bad_edit_names_the_wrapper(pipe):
    class Shrinks:
        name = "shrinks"

        @attnkit.hookimpl(wrapper=True)
        def attnkit_qkv(self, call):
            yield
            call.q = call.q[:, :1]

    with pytest.raises(attnkit.PluginError, match="plugin 'shrinks' in attnkit_qkv at layer 0") as raised:
        with attnkit.attach(pipe, plugins=[Shrinks()]):
            run(pipe)
    assert raised.value.plugin == "shrinks"


def test_a_wrappers_edit_before_it_yields_is_named_as_the_wrappers_not_the_next_plugins(pipe):
    class ShrinksFirst:
        name = "shrinks-first"

        @attnkit.hookimpl(wrapper=True)
        def attnkit_qkv(self, call):
            call.k = call.k[:, :1]
            return (yield)

    with pytest.raises(attnkit.PluginError) as raised:
        with attnkit.attach(pipe, plugins=[Seen(name="innocent"), ShrinksFirst()]):
            run(pipe)
    assert raised.value.plugin == "shrinks-first" and "call.k is" in str(raised.value)


def test_hooks_run_through_pluggy_so_its_call_monitoring_sees_them(pipe):
    seen = []

    class Monitors:
        name = "monitors"

        @attnkit.hookimpl
        def attnkit_session_start(self, session):
            session.plugin_manager.add_hookcall_monitoring(
                lambda hook, methods, kwargs: seen.append((hook, [impl.plugin_name for impl in methods])),
                lambda outcome, hook, methods, kwargs: None,
            )

    with attnkit.attach(pipe, plugins=[Monitors(), Seen(attnkit.Where(layers={0}))]) as session:
        run(pipe)
    qkv = [plugins for hook, plugins in seen if hook == "attnkit_qkv"]
    assert qkv == [["seen"]] * STEPS  # called for layer 0 only, through pluggy's executor


def test_where_takes_sets_ranges_and_names_and_refuses_a_lone_number():
    where = attnkit.Where(roles="joint", layers=[2, 0], steps=range(3), branches="reference")
    assert where == attnkit.Where(roles={"joint"}, layers={0, 2}, steps=range(3), branches=("reference",))
    with pytest.raises(TypeError, match=r"pass range\(40\)"):
        attnkit.Where(steps=40)
    with pytest.raises(TypeError, match="integers from 0"):
        attnkit.Where(layers={-1})


def test_an_attnkit_where_that_is_not_a_where_is_refused(pipe):
    plugin = Seen(name="not-a-where")
    plugin.attnkit_where = {"steps": range(3)}
    with pytest.raises(attnkit.PluginError, match="'not-a-where' has attnkit_where = .*must be an attnkit.Where"):
        with attnkit.attach(pipe, plugins=[plugin]):
            pass


def test_roles_declared_differently_twice_are_refused_and_the_same_twice_accepted(pipe):
    plugin = Seen(attnkit.Where(roles={"cross"}), name="twice")
    plugin.attnkit_roles = {"joint"}
    with pytest.raises(attnkit.PluginError, match="declares roles twice"):
        with attnkit.attach(pipe, plugins=[plugin]):
            pass
    plugin.attnkit_where = attnkit.Where(roles={"joint"}, layers={0})
    with attnkit.attach(pipe, plugins=[plugin]):
        run(pipe)
    assert plugin.layers() == {0}


def test_a_gate_computed_from_bad_settings_names_its_plugin(pipe):
    class BadSettings(Seen):
        @property
        def attnkit_where(self):
            return attnkit.Where(steps=range(2.5))

    with pytest.raises(attnkit.PluginError, match="plugin 'bad-settings''s attnkit_where raised TypeError"):
        with attnkit.attach(pipe, plugins=[BadSettings(name="bad-settings")]):
            pass
