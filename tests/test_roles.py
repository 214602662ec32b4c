"""Attention roles: query and key spans of joint, self and cross calls, masks, softmax groups, attnkit_roles."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.kernel import ExtraKV, attention_with_extras, sdpa
from attnkit.layout import TokenLayout


def make_call(layout: TokenLayout, num_queries: int, num_keys: int, mask=None, batch=2, heads=2, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    call = attnkit.AttentionCall(
        layer=0,
        name="blocks.0.attn",
        step=0,
        timestep=1.0,
        branches={"uncond": [0], "cond": [1]},
        layout=layout,
        hidden_states=torch.zeros(batch, num_queries, heads * dim),
        project=lambda h: (None, None, None),
        attention_mask=mask,
    )
    call.q = torch.randn(batch, heads, num_queries, dim, generator=generator)
    call.k = torch.randn(batch, heads, num_keys, dim, generator=generator)
    call.v = torch.randn(batch, heads, num_keys, dim, generator=generator)
    return call


def naive(q, k, bias=None):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return torch.softmax(scores if bias is None else scores + bias, dim=-1)


CROSS = TokenLayout(text=slice(0, 5), video=slice(0, 6), grid=(1, 2, 3), role="cross")


def test_joint_layout_has_the_same_spans_on_both_sides():
    layout = TokenLayout(text=slice(12, 16), video=slice(0, 12), grid=(3, 2, 2))
    assert layout.query_span("text") == layout.key_span("text") == layout.text == slice(12, 16)
    assert layout.side_of("video") == "both"
    assert layout.num_tokens == layout.num_query_tokens == layout.num_key_tokens == 16


def test_cross_layout_puts_video_in_queries_and_text_in_keys():
    layout = TokenLayout(text=slice(3, 8), video=slice(0, 6), grid=(1, 2, 3), image=slice(0, 3), role="cross")
    assert layout.query_span("video") == slice(0, 6)
    assert layout.key_span("text") == slice(3, 8) and layout.key_span("image") == slice(0, 3)
    assert (layout.num_query_tokens, layout.num_key_tokens) == (6, 8)
    with pytest.raises(KeyError, match="no 'video' span among its keys"):
        layout.key_span("video")
    with pytest.raises(ValueError, match="num_query_tokens or num_key_tokens"):
        layout.num_tokens


def test_self_layout_has_no_text_span():
    layout = TokenLayout(text=None, video=slice(0, 6), grid=(1, 2, 3), role="self")
    assert layout.num_text_tokens == 0
    with pytest.raises(KeyError, match="attnkit_roles"):
        layout.span("text")
    with pytest.raises(ValueError, match="video tokens only"):
        TokenLayout(text=slice(0, 2), video=slice(2, 8), grid=(1, 2, 3), role="self")


def test_unknown_role_and_unknown_separate_span_are_rejected():
    with pytest.raises(ValueError, match="'both' is not one of"):
        TokenLayout(text=slice(0, 2), video=slice(2, 8), grid=(1, 2, 3), role="both")
    with pytest.raises(ValueError, match="'image', which is not a key span"):
        TokenLayout(text=slice(0, 2), video=slice(0, 6), grid=(1, 2, 3), role="cross", separately_normalised=("image",))


def test_cross_call_probe_maps_video_queries_to_text_keys():
    call = make_call(CROSS, num_queries=6, num_keys=5)
    probs = call.attention_probs("video", "text", heads="all")
    torch.testing.assert_close(probs, naive(call.q, call.k), atol=1e-6, rtol=0)
    assert call.attention_probs("video", [1, 4], branch="cond").shape == (1, 6, 2)


def test_cross_call_key_indices_are_checked_against_the_keys():
    call = make_call(CROSS, num_queries=6, num_keys=5)
    with pytest.raises(IndexError, match="5 key tokens"):
        call.attention_probs([0], [5])
    with pytest.raises(KeyError, match="no 'text' span among its queries"):
        call.attention_probs("text", "text")


def test_span_views_refuse_the_wrong_side_of_a_cross_call():
    call = make_call(CROSS, num_queries=6, num_keys=5)
    assert call.video(call.q).shape[2] == 6 and call.text(call.k).shape[2] == 5
    with pytest.raises(ValueError, match="looks like the keys"):
        call.video(call.k)


def test_probe_on_a_masked_call_equals_the_naive_masked_softmax():
    layout = TokenLayout(text=slice(6, 10), video=slice(0, 6), grid=(1, 2, 3))
    mask = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    mask[0, ..., 8:] = False  # row 0's last two text tokens are padding
    call = make_call(layout, 10, 10, mask=mask)
    bias = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    probs = call.attention_probs(list(range(10)), list(range(10)), heads="all")
    torch.testing.assert_close(probs, naive(call.q, call.k, bias), atol=1e-6, rtol=0)
    assert probs[0, :, :, 8:].abs().max() == 0
    cond = call.attention_probs("video", "text", branch="cond", heads=[1])
    torch.testing.assert_close(cond, naive(call.q, call.k, bias)[1:, 1:, 0:6, 6:10], atol=1e-6, rtol=0)


def test_separately_normalised_keys_have_their_own_softmax():
    layout = TokenLayout(
        text=slice(3, 8), video=slice(0, 6), grid=(1, 2, 3), image=slice(0, 3), role="cross",
        separately_normalised=("image",),
    )
    call = make_call(layout, num_queries=6, num_keys=8)
    torch.testing.assert_close(call.attention_probs("video", "text", heads="all"), naive(call.q, call.k[:, :, 3:]))
    torch.testing.assert_close(call.attention_probs("video", "image", heads="all"), naive(call.q, call.k[:, :, :3]))
    with pytest.raises(ValueError, match="normalised separately"):
        call.attention_probs("video", [2, 3])


def test_extra_kv_with_a_mask_leaves_extras_unmasked_and_own_keys_masked():
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 6, 8, generator=generator) for _ in range(3))
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    mask[1, ..., 4:] = False
    extra = ExtraKV(key=k[1:, :, :2], value=v[1:, :, :2], rows=[1], query_tokens=slice(0, 3))
    output = attention_with_extras(q, k, v, [extra], attn_mask=mask).output
    torch.testing.assert_close(output[0], sdpa(q[:1], k[:1], v[:1], mask[:1])[0])
    own_and_extra_mask = torch.cat([mask[1:], torch.ones(1, 1, 1, 2, dtype=torch.bool)], dim=-1)
    expected = sdpa(q[1:, :, :3], torch.cat([k[1:], k[1:, :, :2]], 2), torch.cat([v[1:], v[1:, :, :2]], 2), own_and_extra_mask)
    torch.testing.assert_close(output[1:, :, :3], expected)
    torch.testing.assert_close(output[1:, :, 3:], sdpa(q[1:, :, 3:], k[1:], v[1:], mask[1:]))


class JointOnly:
    name = "joint-only"
    attnkit_roles = {"joint"}

    def __init__(self):
        self.roles_seen = set()

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.roles_seen.add(call.layout.role)


def test_a_joint_only_plugin_is_refused_at_attach_on_a_model_without_joint_calls():
    from attnkit.session import Session

    session = Session(torch.nn.Linear(2, 2), plugins=[JointOnly()])
    session.plugin_manager = attnkit.plugins.make_plugin_manager(session.plugins)

    class SelfCross:
        name = "wan-like"
        roles = frozenset({"self", "cross"})

    session.adapter = SelfCross()
    with pytest.raises(attnkit.UnsupportedRoleError) as raised:
        session._check_roles()
    message = str(raised.value)
    assert "'joint-only'" in message and "['joint']" in message and "['cross', 'self']" in message


def test_a_misspelt_role_is_refused():
    from attnkit.session import Session

    class Misspelt(JointOnly):
        name = "misspelt"
        attnkit_roles = {"crosss"}

    session = Session(torch.nn.Linear(2, 2), plugins=[Misspelt()])
    session.plugin_manager = attnkit.plugins.make_plugin_manager(session.plugins)
    session.adapter = type("A", (), {"name": "x", "roles": frozenset({"cross"})})()
    with pytest.raises(attnkit.UnsupportedRoleError, match=r"\['crosss'\] are not roles"):
        session._check_roles()
