"""The kernel against naive full-softmax attention on small shapes."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.kernel import (
    ExtraKV,
    attention_with_extras,
    chunked_logsumexp,
    sdpa,
    sdpa_with_logsumexp,
    softmax_slice,
)


def qkv(batch=2, heads=3, tokens=20, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, tokens, dim, generator=generator) for _ in range(3)]


def naive_attention(q, k, v, bias=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1)
    return probs @ v, torch.logsumexp(scores, dim=-1)


def test_sdpa_with_logsumexp_returns_the_plain_sdpa_output_and_true_logsumexp():
    q, k, v = qkv()
    output, logsumexp = sdpa_with_logsumexp(q, k, v)
    assert torch.equal(output, sdpa(q, k, v))
    torch.testing.assert_close(logsumexp, naive_attention(q, k, v)[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_logsumexp_matches_full(chunk_size):
    q, k, _ = qkv(tokens=23)
    expected = naive_attention(q, k, k)[1]
    torch.testing.assert_close(chunked_logsumexp(q, k, chunk_size=chunk_size), expected, atol=1e-5, rtol=0)


def test_checkpointed_logsumexp_gradient_matches_autograd_of_full():
    q, k, _ = qkv(tokens=17)
    q1, k1 = q.clone().requires_grad_(), k.clone().requires_grad_()
    chunked_logsumexp(q1, k1, chunk_size=5).square().sum().backward()
    q2, k2 = q.clone().requires_grad_(), k.clone().requires_grad_()
    naive_attention(q2, k2, k2)[1].square().sum().backward()
    torch.testing.assert_close(q1.grad, q2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k1.grad, k2.grad, atol=1e-5, rtol=1e-5)


def test_softmax_slice_matches_full_softmax():
    q, k, v = qkv()
    _, logsumexp = sdpa_with_logsumexp(q, k, v)
    rows, cols = [0, 5, 19], [2, 3, 11]
    full = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    torch.testing.assert_close(softmax_slice(q, k, logsumexp, rows, cols), full[:, :, rows][..., cols], atol=1e-6, rtol=0)


def test_extra_kv_is_exact_softmax_over_union_for_chosen_rows_and_tokens():
    q, k, v = qkv(batch=3, tokens=12)
    extra_k, extra_v = qkv(batch=1, tokens=5, seed=1)[:2]
    extra = ExtraKV(key=extra_k, value=extra_v, rows=[2], query_tokens=slice(4, 12), key_scale=0.9, value_scale=0.5)
    output, logsumexp = attention_with_extras(q, k, v, [extra], want_logsumexp=True)[:2]

    expected, expected_lse = naive_attention(q, k, v)
    union_out, union_lse = naive_attention(
        q[2:3, :, 4:], torch.cat([k[2:3], 0.9 * extra_k], dim=2), torch.cat([v[2:3], 0.5 * extra_v], dim=2)
    )
    expected[2:3, :, 4:], expected_lse[2:3, :, 4:] = union_out, union_lse
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(logsumexp, expected_lse, atol=1e-5, rtol=0)


def test_extra_kv_score_bias_is_added_to_extra_keys_only():
    q, k, v = qkv(batch=1, tokens=6)
    extra = ExtraKV(key=k.clone(), value=v.clone(), rows=[0], score_bias=-0.5)
    output = attention_with_extras(q, k, v, [extra]).output
    bias = torch.cat([torch.zeros(6, 6), torch.full((6, 6), -0.5)], dim=-1)
    expected, _ = naive_attention(q, torch.cat([k, k], 2), torch.cat([v, v], 2), bias)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)


def test_two_extras_with_overlapping_tokens_are_seen_together_where_they_overlap():
    q, k, v = qkv(batch=1, tokens=8)
    first_k, first_v = qkv(batch=1, tokens=2, seed=2)[:2]
    second_k, second_v = qkv(batch=1, tokens=3, seed=3)[:2]
    extras = [
        ExtraKV(key=first_k, value=first_v, rows=[0], query_tokens=slice(0, 5)),
        ExtraKV(key=second_k, value=second_v, rows=[0], query_tokens=[3, 4, 5, 6]),
    ]
    output = attention_with_extras(q, k, v, extras).output
    for token in range(8):
        keys, values = [k], [v]
        if token < 5:
            keys.append(first_k), values.append(first_v)
        if 3 <= token <= 6:
            keys.append(second_k), values.append(second_v)
        expected, _ = naive_attention(q[:, :, token : token + 1], torch.cat(keys, 2), torch.cat(values, 2))
        torch.testing.assert_close(output[:, :, token : token + 1], expected, atol=1e-5, rtol=0)


@pytest.fixture
def small_blocks(monkeypatch):
    """Score blocks of 24 elements, so small shapes split over heads, rows and batch rows."""
    monkeypatch.setattr("attnkit.kernel.BLOCK_ELEMENTS", 24)


def key_mask_bias(batch, tokens, masked):
    bias = torch.zeros(batch, 1, 1, tokens)
    bias[..., masked] = float("-inf")
    return bias


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_chunked_logsumexp_in_small_blocks_with_a_mask_matches_full(small_blocks, chunk_size):
    q, k, _ = qkv(tokens=13)
    bias = key_mask_bias(2, 13, [1, 7])
    expected = naive_attention(q, k, k, bias)[1]
    torch.testing.assert_close(chunked_logsumexp(q, k, bias=bias, chunk_size=chunk_size), expected, atol=1e-5, rtol=0)


def test_chunked_logsumexp_gradient_in_small_blocks_with_a_mask_matches_autograd_of_full(small_blocks):
    q, k, _ = qkv(tokens=11)
    bias = key_mask_bias(2, 11, [0, 4])
    upstream = torch.randn(2, 3, 11, generator=torch.Generator().manual_seed(5))
    q1, k1 = q.clone().requires_grad_(), k.clone().requires_grad_()
    (chunked_logsumexp(q1, k1, bias=bias) * upstream).sum().backward()
    q2, k2 = q.clone().requires_grad_(), k.clone().requires_grad_()
    (naive_attention(q2, k2, k2, bias)[1] * upstream).sum().backward()
    torch.testing.assert_close(q1.grad, q2.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(k1.grad, k2.grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sdpa_with_logsumexp_and_a_boolean_mask_is_the_plain_sdpa_output(dtype):
    q, k, v = (tensor.to(dtype) for tensor in qkv(tokens=17))
    mask = torch.ones(2, 1, 1, 17, dtype=torch.bool)
    mask[0, ..., 12:] = False
    output, logsumexp = sdpa_with_logsumexp(q, k, v, mask)
    assert torch.equal(output, sdpa(q, k, v, mask))
    bias = torch.zeros(2, 1, 1, 17, dtype=torch.float64).masked_fill(~mask, float("-inf"))
    expected = naive_attention(q.double(), k.double(), v.double(), bias)[1]
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(logsumexp.double(), expected, atol=tolerance, rtol=0)


def test_extra_kv_with_a_per_query_score_bias_and_a_model_mask_is_the_exact_softmax(small_blocks):
    q, k, v = qkv(batch=2, tokens=9)
    extra_k, extra_v = qkv(batch=1, tokens=4, seed=1)[:2]
    per_query = torch.randn(3, 9, 4, generator=torch.Generator().manual_seed(2))  # (heads, tokens, M)
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 2] = False
    extra = ExtraKV(key=extra_k, value=extra_v, rows=[1], query_tokens=slice(3, 9), score_bias=per_query)
    output, logsumexp = attention_with_extras(q, k, v, [extra], want_logsumexp=True, attn_mask=mask)[:2]

    own_bias = key_mask_bias(2, 9, []).masked_fill(~mask, float("-inf"))
    expected, expected_lse = naive_attention(q, k, v, own_bias)
    union_bias = torch.cat([own_bias[1:2].expand(1, 3, 6, 9), per_query[None, :, 3:]], dim=-1)
    union_out, union_lse = naive_attention(
        q[1:2, :, 3:], torch.cat([k[1:2], extra_k], dim=2), torch.cat([v[1:2], extra_v], dim=2), union_bias
    )
    expected[1:2, :, 3:], expected_lse[1:2, :, 3:] = union_out, union_lse
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(logsumexp, expected_lse, atol=1e-5, rtol=0)


def test_a_score_bias_of_the_wrong_shape_names_the_shapes_it_accepts():
    q, k, v = qkv(batch=1, tokens=6)
    extra = ExtraKV(key=k.clone(), value=v.clone(), rows=[0], score_bias=torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"score_bias must be a float or a tensor of shape \(keys,\)"):
        attention_with_extras(q, k, v, [extra])


def kept_share_attention(q, k, v, extra_k, extra_v, competing, bias=None):
    """Naively: the plain softmax's weights for keys outside ``competing``; the competing keys' plain mass
    split over them and the extra keys in one softmax. Returns output and the full weight rows."""
    scale = 1 / math.sqrt(q.shape[-1])
    plain = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
    union_scores = q @ torch.cat([k[..., competing, :], extra_k], dim=-2).transpose(-1, -2) * scale
    if bias is not None:
        union_scores = union_scores + bias
    union = torch.softmax(union_scores, dim=-1) * plain[..., competing].sum(-1, keepdim=True)
    outside = [key for key in range(k.shape[-2]) if key not in competing]
    output = plain[..., outside] @ v[..., outside, :] + union @ torch.cat([v[..., competing, :], extra_v], dim=-2)
    return output, plain[..., outside], union


def test_extra_keys_that_compete_with_some_own_keys_leave_the_others_their_plain_share():
    q, k, v = qkv(batch=2, tokens=10)
    extra_k, extra_v = qkv(batch=1, tokens=4, seed=1)[:2]
    video = list(range(3, 10))  # tokens 0-2 play the prompt
    extra = ExtraKV(key=extra_k, value=extra_v, rows=[1], query_tokens=video, key_scale=0.9, competes_with=video)
    result = attention_with_extras(q, k, v, [extra], want_logsumexp=True)

    expected, prompt_weights, union_weights = kept_share_attention(
        q[1:2, :, video], k[1:2], v[1:2], 0.9 * extra_k, extra_v, video
    )
    torch.testing.assert_close(result.output[1:2, :, video], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.output[0], sdpa(q, k, v)[0])  # other rows and tokens: plain attention
    torch.testing.assert_close(result.output[1, :, :3], sdpa(q, k, v)[1, :, :3])
    # The normalisers give every weight back: the competing set's and the extras' from logsumexp, the prompt's
    # from outside_logsumexp, and together they sum to one.
    assert result.competing_keys.tolist() == [False] * 3 + [True] * 7
    queries = q[1:2, :, video]
    union_keys = torch.cat([k[1:2, :, video], 0.9 * extra_k], dim=-2)
    scale = 1 / math.sqrt(q.shape[-1])
    from_lse = torch.exp(queries @ union_keys.transpose(-1, -2) * scale - result.logsumexp[1:2, :, video, None])
    prompt = torch.exp(
        queries @ k[1:2, :, :3].transpose(-1, -2) * scale - result.outside_logsumexp[1:2, :, video, None]
    )
    torch.testing.assert_close(from_lse, union_weights, atol=1e-5, rtol=0)
    torch.testing.assert_close(prompt, prompt_weights, atol=1e-5, rtol=0)
    torch.testing.assert_close(prompt.sum(-1) + from_lse.sum(-1), torch.ones(1, 3, 7), atol=1e-5, rtol=0)


def test_kept_share_with_a_per_query_bias_and_a_model_mask_in_small_blocks(small_blocks):
    q, k, v = qkv(batch=1, tokens=9)
    extra_k, extra_v = qkv(batch=1, tokens=4, seed=1)[:2]
    per_query = torch.randn(3, 9, 4, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(1, 1, 1, 9, dtype=torch.bool)
    mask[..., 4] = False  # a masked competing key
    video = list(range(2, 9))
    extra = ExtraKV(key=extra_k, value=extra_v, rows=[0], query_tokens=video, score_bias=per_query, competes_with=video)
    output = attention_with_extras(q, k, v, [extra], attn_mask=mask).output

    kept = [0, 1, 2, 3, 5, 6, 7, 8]
    live_video = [2, 3, 5, 6, 7, 8]
    expected, _, _ = kept_share_attention(
        q[..., video, :], k[..., kept, :], v[..., kept, :], extra_k, extra_v,
        [kept.index(key) for key in live_video],
        torch.cat([torch.zeros(1, 3, 7, 6), per_query[None, :, video]], dim=-1),
    )
    torch.testing.assert_close(output[..., video, :], expected, atol=1e-5, rtol=0)


def test_competing_with_every_own_key_is_the_plain_union_softmax_bit_for_bit():
    q, k, v = qkv(batch=1, tokens=8)
    extra_k, extra_v = qkv(batch=1, tokens=3, seed=1)[:2]
    union = ExtraKV(key=extra_k, value=extra_v, rows=[0])
    everything = ExtraKV(key=extra_k, value=extra_v, rows=[0], competes_with=slice(None))
    competing_with_all = attention_with_extras(q, k, v, [everything]).output
    assert torch.equal(competing_with_all, attention_with_extras(q, k, v, [union]).output)


def test_competing_sets_that_are_empty_or_differ_within_a_call_are_refused():
    q, k, v = qkv(batch=1, tokens=8)
    extra_k, extra_v = qkv(batch=1, tokens=3, seed=1)[:2]
    empty = ExtraKV(key=extra_k, value=extra_v, rows=[0], competes_with=[])
    with pytest.raises(ValueError, match="competes_with selects none of the 8 own keys"):
        attention_with_extras(q, k, v, [empty])
    first = ExtraKV(key=extra_k, value=extra_v, rows=[0], competes_with=[4, 5, 6, 7])
    second = ExtraKV(key=extra_k, value=extra_v, rows=[0], competes_with=[5, 6, 7])
    with pytest.raises(ValueError, match="different competes_with key sets"):
        attention_with_extras(q, k, v, [first, second])
