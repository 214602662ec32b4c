"""Plugins the conformance tests attach: read-only probes, a raising plugin, an extra-K/V plugin."""

from __future__ import annotations

import torch

import attnkit


class ReadOnlyProbe:
    """Touches every hook and reads maps, changing nothing; records what it saw."""

    name = "read-only-probe"

    def __init__(self):
        self.steps: list[tuple[int, float]] = []
        self.layouts = []
        self.calls = 0
        self.slices: list[tuple[torch.Tensor, torch.Tensor]] = []

    @attnkit.hookimpl
    def attnkit_step_start(self, step, timestep):
        self.steps.append((step, timestep))

    @attnkit.hookimpl
    def attnkit_before_attention(self, call):
        assert call.hidden_states.dim() == 3

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.layouts.append(call.layout)

    @attnkit.hookimpl
    def attnkit_attention_output(self, call, output):
        self.calls += 1
        text, video = call.layout.text, call.layout.video
        query_tokens = [text.start, text.start + 1, video.start, video.stop - 1]
        key_tokens = [text.start + 2, video.start + 1, video.stop - 2]
        probs = call.attention_probs(query_tokens, key_tokens, heads="all")
        self.slices.append((probs, naive_softmax(call.q, call.k, call.softmax_scale)[:, :, query_tokens][..., key_tokens]))


def naive_softmax(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """The full N x N softmax map, only for checking on tiny shapes."""
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)


class RaisesAtLayer:
    name = "raises-at-layer"

    def __init__(self, layer: int = 1):
        self.layer = layer

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        if call.layer == self.layer:
            raise ValueError("deliberate failure")


class DuplicateVideoKV:
    """Gives the cond rows' video queries a copy of their own video keys/values as extra K/V."""

    name = "duplicate-video-kv"

    def __init__(self):
        self.checked = 0
        self.max_error = 0.0

    @attnkit.hookimpl
    def attnkit_extra_kv(self, call):
        rows = call.rows("cond")
        return attnkit.ExtraKV(
            key=call.video(call.k[rows]), value=call.video(call.v[rows]), rows=rows, query_tokens=call.layout.video
        )

    @attnkit.hookimpl
    def attnkit_attention_output(self, call, output):
        # Duplicating every video key doubles its softmax weight: the same as a log(2) bias on video keys,
        # for video queries of cond rows only; everything else is plain attention.
        bias = torch.zeros(call.q.shape[2], call.k.shape[2])
        bias[call.layout.video, call.layout.video] = torch.log(torch.tensor(2.0))
        expected = torch.nn.functional.scaled_dot_product_attention(call.q, call.k, call.v)
        rows = call.rows("cond")
        expected[rows] = torch.nn.functional.scaled_dot_product_attention(call.q[rows], call.k[rows], call.v[rows], attn_mask=bias)
        self.max_error = max(self.max_error, (output - expected).abs().max().item())
        self.checked += 1
