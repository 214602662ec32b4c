"""Plugins the conformance tests attach: read-only probes, a raising plugin, an extra-K/V plugin.

They read the call only through its roles and spans (``layout.query_spans`` / ``key_spans``, the softmax
groups, ``attention_mask``), so the same plugins check joint, self and cross calls of every adapter.
"""

from __future__ import annotations

import torch

import attnkit
from attnkit.masks import MASKED_BIAS, additive_bias


def key_groups(layout) -> list[list[int]]:
    """Key positions of each softmax group: each separately normalised span, then all other keys."""
    separate = [list(range(layout.key_span(name).start, layout.key_span(name).stop)) for name in layout.separately_normalised]
    taken = {position for group in separate for position in group}
    rest = [position for position in range(layout.num_key_tokens) if position not in taken]
    return separate + [rest]


def mask_bias(call) -> torch.Tensor:
    """The call's attention mask as an additive (B or 1, heads or 1, Nq or 1, Nk) bias; zeros if none."""
    if call.attention_mask is None:
        return torch.zeros(1, 1, 1, call.k.shape[2], dtype=call.q.dtype)
    return additive_bias(call.attention_mask, call.q.dtype)


def masked_keys(call) -> torch.Tensor:
    """Key positions the call's mask hides from some row (an empty tensor when nothing is masked)."""
    bias = mask_bias(call)
    return torch.nonzero((bias <= MASKED_BIAS).reshape(-1, bias.shape[-1]).any(0)).flatten()


def naive_probs(call, keys: list[int], extra_bias: torch.Tensor | None = None) -> torch.Tensor:
    """The full softmax map over the key group ``keys`` (mask applied), ``(B, heads, Nq, len(keys))``.

    Only for checking on tiny shapes.
    """
    scores = call.q @ call.k[:, :, keys].transpose(-1, -2) * call.softmax_scale + mask_bias(call)[..., keys]
    if extra_bias is not None:
        scores = scores + extra_bias
    return torch.softmax(scores, dim=-1)


def edge_tokens(spans) -> list[int]:
    """First, second and last token of each span: cheap indices that cover every span's borders."""
    return sorted({index for span in spans for index in (span.start, span.start + 1, span.stop - 1) if index < span.stop})


class ReadOnlyProbe:
    """Touches every hook and reads maps, changing nothing; records what it saw."""

    name = "read-only-probe"

    def __init__(self):
        self.steps: list[tuple[int, float]] = []
        self.layouts = []
        self.calls = 0
        self.slices: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.masked_calls = 0
        self.masked_key_mass = 0.0

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
        layout = call.layout
        query_tokens = edge_tokens(layout.query_spans.values())
        for group in key_groups(layout):
            group_spans = [span for span in layout.key_spans.values() if span.start in group]
            key_tokens = edge_tokens(group_spans)
            probs = call.attention_probs(query_tokens, key_tokens, heads="all")
            naive = naive_probs(call, group)[:, :, query_tokens][..., [group.index(key) for key in key_tokens]]
            self.slices.append((probs, naive))
        hidden = masked_keys(call)
        if len(hidden):
            self.masked_calls += 1
            probs = call.attention_probs(list(layout.query_spans.values())[0], hidden.tolist(), heads="all")
            bias = mask_bias(call)[..., hidden]
            self.masked_key_mass += probs.masked_select((bias <= MASKED_BIAS).expand_as(probs)).abs().sum().item()


class RaisesAtLayer:
    name = "raises-at-layer"

    def __init__(self, layer: int = 1):
        self.layer = layer
        self.raised_in: str | None = None

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        if call.layer == self.layer:
            self.raised_in = call.name
            raise ValueError("deliberate failure")


def duplicated_span(layout) -> str:
    """The key span whose copy DuplicateVideoKV adds: video keys where there are any, else text keys."""
    return "video" if "video" in layout.key_spans else "text"


class DuplicateVideoKV:
    """Gives the cond rows' video queries a copy of their own video keys/values as extra K/V.

    In a cross call, whose keys hold no video, it duplicates the text keys instead (extras join the softmax
    of the keys that are not separately normalised, which is where the text is).
    """

    name = "duplicate-video-kv"

    def __init__(self):
        self.checked = 0
        self.max_error = 0.0

    @attnkit.hookimpl
    def attnkit_extra_kv(self, call):
        if not call.has_branch("cond"):
            return None
        rows = call.rows("cond")
        span = duplicated_span(call.layout)
        # Extra keys are never masked by the model's mask, so copies of masked keys (LTX-Video's padded
        # text in a cross call) carry the mask themselves, as any plugin that copies keys must.
        bias = mask_bias(call).expand(call.batch_size, -1, -1, -1)[rows][..., call.layout.key_span(span)]
        if len(rows) != 1 and bool(bias.any()):
            raise NotImplementedError("copying masked keys to several rows needs a per-row score bias")
        return attnkit.ExtraKV(
            key=call.tokens(call.k[rows], span),
            value=call.tokens(call.v[rows], span),
            rows=rows,
            query_tokens=call.layout.query_span("video"),
            score_bias=bias if bool(bias.any()) else None,
        )

    @attnkit.hookimpl
    def attnkit_attention_output(self, call, output):
        # Duplicating every key of a span doubles its softmax weight: the same as a log(2) bias on those keys,
        # for video queries of cond rows only; everything else is plain attention.
        layout = call.layout
        duplicated = layout.key_span(duplicated_span(layout))
        video_queries = layout.query_span("video")
        groups = key_groups(layout)
        expected = torch.zeros_like(output)
        for group in groups:
            bias = torch.zeros(call.batch_size, 1, call.q.shape[2], len(group))
            if group is groups[-1] and call.has_branch("cond"):
                columns = [group.index(key) for key in range(duplicated.start, duplicated.stop)]
                for row in call.rows("cond"):
                    bias[row, 0, video_queries.start : video_queries.stop, columns] = torch.log(torch.tensor(2.0))
            expected = expected + naive_probs(call, group, bias) @ call.v[:, :, group]
        self.max_error = max(self.max_error, (output - expected).abs().max().item())
        self.checked += 1


class RoleSpy:
    """Declares the roles it handles and records the roles of the calls it is given."""

    def __init__(self, roles: set[str]):
        self.attnkit_roles = set(roles)
        self.name = f"role-spy-{'-'.join(sorted(roles))}"
        self.seen: list[str] = []

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.seen.append(call.layout.role)
