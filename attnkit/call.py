"""The attention call handed to hooks: where we are, what the batch and tokens are, and q/k/v."""

from __future__ import annotations

from typing import Callable

import torch

from .errors import PluginError
from .kernel import TokenIndex, chunked_logsumexp, default_scale, softmax_slice
from .layout import TokenLayout
from .masks import additive_bias

Branches = dict[str, list[int]]


class AttentionCall:
    """One attention module's forward, as plugins see it.

    Fields every hook may read: ``layer`` (index of the attention module in the model), ``name`` (its
    module path), ``step`` and ``timestep`` (the denoising step the session is in), ``branches``
    (branch name -> batch rows, e.g. ``{"uncond": [0], "cond": [1], "reference": [2]}``), ``layout``
    (:class:`~attnkit.layout.TokenLayout`), ``hidden_states`` (``(B, N, C)``, the sequence entering the
    Q/K/V projections; in a cross call, the video stream that makes the queries), and, from ``attnkit_qkv``
    on, ``q`` (``(B, heads, Nq, head_dim)``), ``k``, ``v`` (``(B, heads, Nk, head_dim)``), after norm and
    RoPE. In joint and self calls ``Nq == Nk``. ``output`` (``(B, heads, Nq, head_dim)``, before the output
    projection) exists in ``attnkit_attention_output``.

    ``attention_mask`` is the mask the model applies (None for most models): boolean (True = may attend)
    or additive, broadcastable to ``(B, heads, Nq, Nk)``. HunyuanVideo masks its text padding with it;
    the probe and the kernel both honour it.
    """

    def __init__(
        self,
        *,
        layer: int,
        name: str,
        step: int,
        timestep: float | None,
        branches: Branches,
        layout: TokenLayout,
        hidden_states: torch.Tensor,
        project: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        scale: float | None = None,
        attention_mask: torch.Tensor | None = None,
    ):
        self.layer = layer
        self.name = name
        self.step = step
        self.timestep = timestep
        self.branches = branches
        self.layout = layout
        self.hidden_states = hidden_states
        self.scale = scale
        self.attention_mask = attention_mask
        self._project = project
        self.q: torch.Tensor | None = None
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        self._logsumexp: torch.Tensor | None = None
        # Log-sum-exps of separately normalised key groups (layout.separately_normalised), by span name.
        self._group_logsumexps: dict[str, torch.Tensor] = {}
        # Set by the kernel where extra keys compete with only some own keys (ExtraKV.competes_with): the
        # competing keys (a mask) and the normaliser of the other own keys, whose share the extras left as is.
        self._kept_share: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- batch rows and token spans -------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return self.hidden_states.shape[0]

    def rows(self, branch: str) -> list[int]:
        """Batch rows of ``branch``; a clear error names the branches there are."""
        if branch not in self.branches:
            raise KeyError(
                f"branch {branch!r} is not in this batch; branches are {sorted(self.branches)} "
                "(set them with attach(..., branches=...) or session.branches)"
            )
        return self.branches[branch]

    def has_branch(self, branch: str) -> bool:
        return bool(self.branches.get(branch))

    def branch(self, tensor: torch.Tensor, branch: str) -> torch.Tensor:
        """The rows of ``tensor`` (batch first) that belong to ``branch``."""
        rows = self.rows(branch)
        return tensor[rows[0] : rows[-1] + 1] if _contiguous(rows) else tensor[rows]

    def tokens(self, tensor: torch.Tensor, span: str | TokenIndex) -> torch.Tensor:
        """The tokens of a span (``"text"``, ``"video"``, ``"image"`` or an index) of ``tensor``.

        Works on ``(B, heads, N, d)`` tensors (q/k/v/output) and on ``(B, N, C)`` hidden states. A named
        span must belong to the side ``tensor`` is on: in a cross call ``"video"`` is a query span and
        ``"text"`` a key span, so ``call.video(call.k)`` is an error there, not a silent wrong slice.
        """
        token_dim = 2 if tensor.dim() == 4 else 1
        if isinstance(span, str):
            index = self.layout.span(span)
            side = self.layout.side_of(span)
            expected = {"query": self.layout.num_query_tokens, "key": self.layout.num_key_tokens}.get(side)
            if expected is not None and tensor.shape[token_dim] != expected:
                other = "keys" if side == "query" else "queries"
                raise ValueError(
                    f"{span!r} is a {side} span of this {self.layout.role} call ({expected} {side} tokens), "
                    f"but the tensor has {tensor.shape[token_dim]} tokens: it looks like the {other}. "
                    f"Its {other} hold {', '.join(self.layout.key_spans if side == 'query' else self.layout.query_spans)}"
                )
        else:
            index = span
        return tensor[(slice(None),) * token_dim + (index,)]

    def text(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.tokens(tensor, "text")

    def video(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.tokens(tensor, "video")

    # --- recomputing q/k/v ----------------------------------------------------------------------------

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v (after norm and RoPE) of ``hidden_states`` through this layer's own projections.

        Autograd flows through it, so ``attnkit_before_attention`` can take a gradient step on the hidden
        states (the model's weights are not changed; freeze or ignore their gradients).
        """
        return self._project(hidden_states)

    # --- attention-map probe --------------------------------------------------------------------------

    def logsumexp(self, group: str | None = None) -> torch.Tensor:
        """Each query row's log-sum-exp over the keys it attends to, ``(B, heads, Nq)``, mask included.

        ``group`` names a separately normalised key span (``layout.separately_normalised``); None means
        the other keys. In ``attnkit_attention_output`` this is the kernel's own (free wherever SDPA runs a
        fused kernel); earlier it is computed in bounded blocks from q and k (it then ignores extra K/V,
        which do not exist yet).
        """
        if group is None and self._logsumexp is not None:
            return self._logsumexp
        if group is not None and group in self._group_logsumexps:
            return self._group_logsumexps[group]
        self._require_qk("logsumexp")
        keys = self._group_keys(group)
        bias = self._mask_bias()
        if bias is not None:
            bias = bias[..., keys]
        logsumexp = chunked_logsumexp(self.q, self.k[:, :, keys], scale=self.scale, bias=bias)
        if group is None:
            self._logsumexp = logsumexp
        else:
            self._group_logsumexps[group] = logsumexp
        return logsumexp

    def attention_probs(
        self,
        query_tokens: TokenIndex | str,
        key_tokens: TokenIndex | str,
        branch: str | None = None,
        heads: str | list[int] = "mean",
    ) -> torch.Tensor:
        """A slice of the softmax attention map, never the Nq x Nk map.

        ``query_tokens`` are a query span name or indices into the queries, ``key_tokens`` a key span name
        or indices into the keys (in joint and self calls both index the one sequence; in a cross call
        ``"video"`` names queries and ``"text"``/``"image"`` name keys). Masked keys get probability 0.
        Returns ``(rows, len(query_tokens), len(key_tokens))`` with ``heads="mean"``,
        ``(rows, len(heads), ...)`` for a list of head indices, or all heads with ``heads="all"``.
        Rows are ``branch``'s rows, or the whole batch. Keys must lie in one softmax group (see
        ``layout.separately_normalised``); each group's probabilities sum to 1.
        """
        self._require_qk("attention_probs")
        query_index = self._checked_index(query_tokens, "query_tokens", "query")
        key_index = self._checked_index(key_tokens, "key_tokens", "key")
        group = self._group_of(key_index)
        q, k, logsumexp = self.q, self.k, self.logsumexp(group)
        bias = self._mask_bias()
        if branch is not None:
            q, k, logsumexp = self.branch(q, branch), self.branch(k, branch), self.branch(logsumexp, branch)
            if bias is not None and bias.shape[0] > 1:
                bias = self.branch(bias, branch)
        if isinstance(heads, list):
            q, k, logsumexp = q[:, heads], k[:, heads], logsumexp[:, heads]
            if bias is not None and bias.shape[1] > 1:
                bias = bias[:, heads]
        if bias is not None:
            # Keys first: a mask that differs per query is then cut to the few key columns before its rows.
            bias = bias[..., key_index]
            bias = bias[..., query_index, :] if bias.shape[2] > 1 else bias
        probs = softmax_slice(q, k, logsumexp, query_index, key_index, scale=self.scale, bias=bias)
        if self._kept_share is not None and group is None:
            probs = self._with_kept_share(probs, q, k, query_index, key_index, bias, branch, heads)
        return probs.mean(dim=1) if heads == "mean" else probs

    def _with_kept_share(self, probs, q, k, query_index, key_index, bias, branch, heads):
        """``probs`` with the keys outside the extras' competing set normalised by their own log-sum-exp."""
        competing, outside_logsumexp = self._kept_share
        outside = ~competing[key_index]
        if not outside.any():
            return probs
        if branch is not None:
            outside_logsumexp = self.branch(outside_logsumexp, branch)
        if isinstance(heads, list):
            outside_logsumexp = outside_logsumexp[:, heads]
        outside_probs = softmax_slice(q, k, outside_logsumexp, query_index, key_index, scale=self.scale, bias=bias)
        return torch.where(outside, outside_probs, probs)

    def _require_qk(self, what: str) -> None:
        if self.q is None or self.k is None:
            raise RuntimeError(f"{what} needs q and k, which exist from the attnkit_qkv hook on")

    def _checked_index(self, tokens: TokenIndex | str, argument: str, side: str) -> TokenIndex:
        if isinstance(tokens, str):
            return self.layout.query_span(tokens) if side == "query" else self.layout.key_span(tokens)
        num_tokens = (self.q if side == "query" else self.k).shape[2]
        if isinstance(tokens, slice):
            return tokens
        index = torch.as_tensor(tokens, dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= num_tokens):
            spans = self.layout.query_spans if side == "query" else self.layout.key_spans
            described = ", ".join(f"{name} {span.start}:{span.stop}" for name, span in spans.items())
            raise IndexError(
                f"{argument} {index.tolist()} out of range: this {self.layout.role} call has {num_tokens} "
                f"{side} tokens (valid indices 0..{num_tokens - 1}; {described})"
            )
        return index.to(self.q.device)

    def _group_keys(self, group: str | None) -> slice | torch.Tensor:
        """Key positions of a softmax group: a separately normalised span, or (None) all other keys."""
        if group is not None:
            return self.layout.key_span(group)
        if not self.layout.separately_normalised:
            return slice(None)
        keep = torch.ones(self.k.shape[2], dtype=torch.bool, device=self.k.device)
        for name in self.layout.separately_normalised:
            keep[self.layout.key_span(name)] = False
        return torch.nonzero(keep).flatten()

    def _group_of(self, key_index: TokenIndex) -> str | None:
        """The softmax group holding all of ``key_index``; an error if the keys straddle groups."""
        if not self.layout.separately_normalised:
            return None
        positions = torch.arange(self.k.shape[2], device=self.k.device)[key_index]
        groups = set()
        for position in positions.tolist():
            name = next(
                (name for name in self.layout.separately_normalised
                 if self.layout.key_span(name).start <= position < self.layout.key_span(name).stop),
                None,
            )
            groups.add(name)
        if len(groups) > 1:
            raise ValueError(
                f"key_tokens span softmax groups {sorted(map(str, groups))}: keys "
                f"{list(self.layout.separately_normalised)} are normalised separately from the rest in this "
                "call; ask for each group's keys in its own attention_probs call"
            )
        return groups.pop() if groups else None

    def _mask_bias(self) -> torch.Tensor | None:
        """The attention mask as a 4-D additive bias (0 or -inf for a boolean mask), or None."""
        return None if self.attention_mask is None else additive_bias(self.attention_mask, self.q.dtype)

    @property
    def softmax_scale(self) -> float:
        return self.scale if self.scale is not None else default_scale(self.q.shape[-1])

    def __repr__(self) -> str:
        return (
            f"AttentionCall(layer={self.layer}, name={self.name!r}, step={self.step}, "
            f"branches={self.branches}, layout={self.layout})"
        )


def _contiguous(rows: list[int]) -> bool:
    return bool(rows) and rows == list(range(rows[0], rows[0] + len(rows)))


# --- checks of what plugins hand back ---------------------------------------------------------------------
# A plugin's wrong return would otherwise surface as a raw torch error deep in the kernel or the next layer,
# naming neither the plugin nor where it ran. Each check raises PluginError naming plugin, hook, layer, step.


def _plugin_error(message: str, plugin: str, hook: str, call: AttentionCall) -> PluginError:
    return PluginError(
        f"plugin {plugin!r} in {hook} at layer {call.layer} ({call.name}), step {call.step}: {message}",
        plugin=plugin,
        hook=hook,
        layer=call.name,
        step=call.step,
    )


def _tensor_problem(value, like: torch.Tensor, what: str) -> str | None:
    """Why ``value`` cannot stand in for ``like`` (same shape, dtype and device), or None."""
    if not isinstance(value, torch.Tensor):
        return f"{what} is {type(value).__name__}, expected a tensor like the one it replaces"
    if value.shape != like.shape or value.dtype != like.dtype or value.device != like.device:
        return (
            f"{what} is {tuple(value.shape)} {value.dtype} on {value.device}, expected "
            f"{tuple(like.shape)} {like.dtype} on {like.device} (rewrite values, not shapes; cast with .to())"
        )
    return None


def check_hidden_states(call: AttentionCall, before: torch.Tensor, plugin: str) -> None:
    """After one ``attnkit_before_attention`` impl: the hidden states still fit the layer's projections."""
    problem = _tensor_problem(call.hidden_states, before, "call.hidden_states")
    if problem:
        raise _plugin_error(problem, plugin, "attnkit_before_attention", call)


def check_qkv(call: AttentionCall, before: tuple[torch.Tensor, torch.Tensor, torch.Tensor], plugin: str) -> None:
    """After one ``attnkit_qkv`` impl: q, k, v keep their shapes, dtypes and devices."""
    for name, old in zip("qkv", before):
        problem = _tensor_problem(getattr(call, name), old, f"call.{name}")
        if problem:
            raise _plugin_error(f"{problem}; use attnkit_extra_kv to add keys", plugin, "attnkit_qkv", call)


def check_output_replacement(call: AttentionCall, output: torch.Tensor, replacement, plugin: str) -> None:
    """An ``attnkit_attention_output`` return must look exactly like the output it replaces (or be None)."""
    problem = _tensor_problem(replacement, output, "the returned output")
    if problem:
        raise _plugin_error(f"{problem}; or return None", plugin, "attnkit_attention_output", call)


def check_extra_kv(extra, call: AttentionCall, plugin: str) -> None:
    """An ``attnkit_extra_kv`` block fits this call: shapes, dtype, device, rows, query tokens and bias."""
    from .kernel import ExtraKV

    q = call.q
    problems = []
    if not isinstance(extra, ExtraKV):
        problems.append(f"returned {type(extra).__name__}, expected attnkit.ExtraKV")
    else:
        rows = len(extra.rows)
        leading = "1" if rows == 1 else f"{rows} or 1"
        expected = f"({leading}, {q.shape[1]}, M, {q.shape[3]})"
        for label, tensor in (("key", extra.key), ("value", extra.value)):
            if not isinstance(tensor, torch.Tensor):
                problems.append(f"{label} is {type(tensor).__name__}, expected a tensor {expected}")
                continue
            if tensor.dim() != 4 or tensor.shape[0] not in (1, rows) or tensor.shape[1] != q.shape[1]:
                problems.append(f"{label} has shape {tuple(tensor.shape)}, expected {expected}")
            elif tensor.shape[3] != q.shape[3]:
                problems.append(f"{label} has head_dim {tensor.shape[3]}, expected {q.shape[3]}")
            if tensor.dtype != q.dtype or tensor.device != q.device:
                problems.append(f"{label} is {tensor.dtype} on {tensor.device}, expected {q.dtype} on {q.device}")
        if not problems and extra.key.shape[-2] != extra.value.shape[-2]:
            problems.append(f"key has {extra.key.shape[-2]} tokens but value has {extra.value.shape[-2]}")
        bad_rows = [row for row in extra.rows if not 0 <= row < q.shape[0]]
        if bad_rows or not extra.rows:
            problems.append(f"rows {extra.rows} must be a non-empty list in 0..{q.shape[0] - 1}")
        problems += _token_index_problems(extra.query_tokens, q.shape[2])
        competing = _token_index_problems(extra.competes_with, call.k.shape[2], "competes_with", "own keys")
        if not competing and extra.competes_with is not None:
            selected = torch.zeros(call.k.shape[2], dtype=torch.bool)
            selected[extra.competes_with] = True
            if not selected.any():
                competing = [
                    f"competes_with selects none of the {call.k.shape[2]} own keys, so the extra keys would get "
                    "no attention; name the own keys they share with (e.g. call.layout.video), or None"
                ]
        problems += competing
        if not problems:
            problems += _score_bias_problems(extra.score_bias, q, extra.key.shape[-2])
    if problems:
        raise _plugin_error("returned bad extra K/V: " + "; ".join(problems), plugin, "attnkit_extra_kv", call)


def _token_index_problems(tokens, num_queries: int, name: str = "query_tokens", side: str = "queries") -> list[str]:
    if tokens is None or isinstance(tokens, slice):
        return []
    try:
        index = torch.as_tensor(tokens)
    except (TypeError, ValueError, RuntimeError):
        return [f"{name} {tokens!r} must be None, a slice, or indices into the {num_queries} {side}"]
    if index.numel() == 0:
        index = index.long()  # torch.as_tensor([]) is float
    if index.dtype == torch.bool:
        if index.dim() != 1 or index.numel() != num_queries:
            return [f"{name} is a boolean mask of shape {tuple(index.shape)}, expected ({num_queries},)"]
        return []
    if index.dtype.is_floating_point or index.dim() > 1:
        return [f"{name} must be integer indices (a list or 1-D tensor), got {index.dtype} {tuple(index.shape)}"]
    if index.numel() and (index.min() < 0 or index.max() >= num_queries):
        return [
            f"{name} {index.min().item()}..{index.max().item()} out of range: this call has "
            f"{num_queries} {side} (valid indices 0..{num_queries - 1})"
        ]
    return []


def _score_bias_problems(bias, q: torch.Tensor, num_extra_keys: int) -> list[str]:
    if bias is None or (isinstance(bias, (int, float)) and not isinstance(bias, bool)):
        return []
    expected = (
        f"a number or a tensor of shape ({num_extra_keys},), (heads, {num_extra_keys}) or "
        f"(heads, {q.shape[2]}, {num_extra_keys}) (heads = {q.shape[1]}; any dimension may be 1)"
    )
    if not isinstance(bias, torch.Tensor):
        return [f"score_bias is {type(bias).__name__}, expected {expected}"]
    # The kernel reads a bias as (1, heads, query tokens, extra keys), each dimension possibly 1.
    shape = tuple(bias.shape)
    if len(shape) == 2:
        shape = (shape[0], 1, shape[1])
    shape = (1,) * (4 - len(shape)) + shape if len(shape) <= 4 else shape
    fits = len(shape) == 4 and all(
        size in (1, limit) for size, limit in zip(shape, (1, q.shape[1], q.shape[2], num_extra_keys))
    )
    return [] if fits else [f"score_bias has shape {tuple(bias.shape)}, expected {expected}"]


def first_non_finite(tensors: dict[str, torch.Tensor | None]) -> str | None:
    """The name of the first tensor holding inf or NaN, or None when all are finite."""
    for name, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None
