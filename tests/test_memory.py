"""No attention-reading or -rewriting path allocates anything near an N x N map.

Measured on the CPU with an allocator-level tracker (kernel-internal buffers included) at 4,096 tokens
and 2 heads. The bounds are shares of the N x N map of the rows involved (fp32: 128 MiB per row): no
single allocation above 2 %, all of the block's live allocations together at most 15 %. At this size
the largest legitimate allocations are a ``(rows, heads, N, head_dim)`` tensor (1.6 %) and one score
block of ``attnkit.kernel.BLOCK_ELEMENTS`` (0.8 % of a batch-2 map); both shrink against the map as N
grows (to 0.36 % and 0.04 % at 17,776 tokens). The paths that built a map made single allocations of 25 % (the
chunked log-sum-exp's 1024-row blocks) and 100 % (ASM's backward, which expanded its per-query bias).
"""

from __future__ import annotations

import pytest
import torch

from attnkit.call import AttentionCall
from attnkit.kernel import attention_with_extras, chunked_logsumexp, sdpa, sdpa_with_logsumexp
from attnkit.layout import TokenLayout
from attnkit.testing.allocations import track_allocations
from attnkit_lmp.asm import appearance_loss
from attnkit_lmp.fbdm import FBDM
from attnkit_lmp.rmtm import RMTM

HEADS, HEAD_DIM, TEXT, GRID = 2, 64, 64, (7, 24, 24)
TOKENS = TEXT + GRID[0] * GRID[1] * GRID[2]  # 4096
ROW_MAP_BYTES = HEADS * TOKENS * TOKENS * 4  # one batch row's N x N map, fp32
LARGEST_SHARE = 0.02
PEAK_SHARE = 0.15
SUBJECT = [3, 4]
LAYOUT = TokenLayout(text=slice(0, TEXT), video=slice(TEXT, TOKENS), grid=GRID)


def qkv(batch: int, seed: int = 0, requires_grad: bool = False):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, HEADS, TOKENS, HEAD_DIM, generator=generator).requires_grad_(requires_grad)
        for _ in range(3)
    ]


def make_call(q, k, v, branches, attention_mask=None) -> AttentionCall:
    call = AttentionCall(
        layer=0,
        name="blocks.0.attn1",
        step=0,
        timestep=500.0,
        branches=branches,
        layout=LAYOUT,
        hidden_states=torch.empty(q.shape[0], TOKENS, 1),
        project=lambda states: (q, k, v),
        attention_mask=attention_mask,
    )
    call.q, call.k, call.v = q, k, v
    return call


def assert_bounded(allocations, rows: int) -> None:
    """Within the shares of the N x N map of ``rows`` batch rows."""
    map_bytes = rows * ROW_MAP_BYTES
    summary = allocations.describe(map_bytes)
    assert allocations.count > 0, "the tracker saw no allocation at all: it is not recording"
    assert allocations.largest <= LARGEST_SHARE * map_bytes, summary
    assert allocations.peak <= PEAK_SHARE * map_bytes, summary


def probe_both_directions(call: AttentionCall) -> torch.Tensor:
    text_to_video = call.attention_probs(SUBJECT, "video")
    video_to_text = call.attention_probs("video", SUBJECT)
    return text_to_video.sum(1) + video_to_text.sum(2)


def test_the_tracker_sees_a_kernel_internal_broadcast_mask():
    # The CPU flash kernel copies a broadcast mask whose last dimension is strided: only an
    # allocator-level tracker sees that copy, a dispatch mode sees small outputs only.
    q, k, _ = qkv(1)
    strided_bias = torch.zeros(1, HEADS, TOKENS, 2).select(-1, 0).unsqueeze(-2)
    with track_allocations() as allocations:
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, k, attn_mask=strided_bias)
    assert allocations.largest >= HEADS * TOKENS * TOKENS * 4
    assert allocations.largest_output < allocations.largest


def test_plain_sdpa_is_within_the_bounds_it_sets_for_the_others():
    q, k, v = qkv(2)
    with track_allocations() as allocations:
        sdpa(q, k, v)
    assert_bounded(allocations, rows=2)


def test_probe_after_the_kernel_allocates_no_map():
    q, k, v = qkv(2)
    with track_allocations() as allocations:
        call = make_call(q, k, v, {"uncond": [0], "cond": [1]})
        call.output, call._logsumexp = sdpa_with_logsumexp(q, k, v)
        probe_both_directions(call)
    assert_bounded(allocations, rows=2)


def test_probe_before_the_kernel_takes_bounded_chunks():
    q, k, v = qkv(2)
    call = make_call(q, k, v, {"uncond": [0], "cond": [1]})
    with track_allocations() as allocations:
        probe_both_directions(call)  # no kernel log-sum-exp yet: the chunked path computes it
    assert_bounded(allocations, rows=2)


def test_probe_with_a_model_key_mask_allocates_no_map():
    q, k, v = qkv(2)
    mask = torch.ones(2, 1, 1, TOKENS, dtype=torch.bool)
    mask[:, ..., TEXT // 2 : TEXT] = False  # text padding, as HunyuanVideo masks it
    with track_allocations() as allocations:
        call = make_call(q, k, v, {"uncond": [0], "cond": [1]}, attention_mask=mask)
        call.output, call._logsumexp = sdpa_with_logsumexp(q, k, v, mask)
        probe_both_directions(call)
        chunked_logsumexp(q, k, bias=call._mask_bias())
    assert_bounded(allocations, rows=2)


def test_fbdm_maps_allocate_no_map():
    q, k, v = qkv(3)
    fbdm = FBDM(SUBJECT)
    with track_allocations() as allocations:
        call = make_call(q, k, v, {"uncond": [0], "cond": [1], "reference": [2]})
        call.output, call._logsumexp = sdpa_with_logsumexp(q, k, v)
        fbdm.attnkit_attention_output(call)
        fbdm.attnkit_step_end(0, 500.0)
    assert fbdm.mask is not None
    assert_bounded(allocations, rows=3)


def foreground(fraction: float = 0.3) -> "FixedForeground":
    video_tokens = TOKENS - TEXT
    return FixedForeground(torch.arange(0, video_tokens, round(1 / fraction)))


class FixedForeground:
    def __init__(self, indices: torch.Tensor):
        self.indices = indices

    def foreground_indices(self) -> torch.Tensor:
        return self.indices


def test_rmtm_extra_keys_and_values_allocate_no_map():
    q, k, v = qkv(3)
    call = make_call(q, k, v, {"uncond": [0], "cond": [1], "reference": [2]})
    with track_allocations() as allocations:
        extra = RMTM(fbdm=foreground()).attnkit_extra_kv(call)
        attention_with_extras(q, k, v, [extra], want_logsumexp=True)
    assert_bounded(allocations, rows=3)


@pytest.mark.parametrize("score_bias", [-0.5, "per-key"], ids=["scalar", "per-key-tensor"])
def test_extra_kv_with_a_model_mask_and_a_score_bias_builds_no_queries_by_keys_bias(score_bias):
    q, k, v = qkv(3)
    mask = torch.ones(3, 1, 1, TOKENS, dtype=torch.bool)
    mask[:, ..., TEXT // 2 : TEXT] = False
    call = make_call(q, k, v, {"uncond": [0], "cond": [1], "reference": [2]}, attention_mask=mask)
    extra = RMTM(fbdm=foreground()).attnkit_extra_kv(call)
    extra_keys = extra.key.shape[-2]
    extra.score_bias = -0.5 if score_bias == -0.5 else torch.linspace(-1, 0, extra_keys).expand(HEADS, extra_keys)
    with track_allocations() as allocations:
        attention_with_extras(q, k, v, [extra], want_logsumexp=True, attn_mask=mask)
    assert_bounded(allocations, rows=3)


def asm_inputs():
    generator = torch.Generator().manual_seed(1)
    video = TOKENS - TEXT

    def leaf(tokens):
        return torch.randn(1, HEADS, tokens, HEAD_DIM, generator=generator).requires_grad_(True)

    return leaf(video), leaf(video), leaf(TEXT), leaf(TEXT)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "chunked"])
def test_asm_loss_and_its_gradient_allocate_no_map(fused):
    inputs = asm_inputs()
    with track_allocations() as allocations:
        loss = appearance_loss(*inputs, subject_tokens=SUBJECT, fused=fused)
        gradients = torch.autograd.grad(loss, inputs)
    assert all(gradient.abs().max() > 0 for gradient in gradients[:2])
    assert_bounded(allocations, rows=1)  # ASM's loss is per target row
