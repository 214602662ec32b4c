"""The attention call handed to hooks: where we are, what the batch and tokens are, and q/k/v."""

from __future__ import annotations

from typing import Callable

import torch

from .kernel import TokenIndex, chunked_logsumexp, default_scale, softmax_slice
from .layout import TokenLayout

Branches = dict[str, list[int]]


class AttentionCall:
    """One attention module's forward, as plugins see it.

    Fields every hook may read: ``layer`` (index of the attention module in the model), ``name`` (its
    module path), ``step`` and ``timestep`` (the denoising step the session is in), ``branches``
    (branch name -> batch rows, e.g. ``{"uncond": [0], "cond": [1], "reference": [2]}``), ``layout``
    (:class:`~attnkit.layout.TokenLayout`), ``hidden_states`` (``(B, N, C)``, the sequence entering the
    Q/K/V projections), and, from ``attnkit_qkv`` on, ``q``, ``k``, ``v`` (``(B, heads, N, head_dim)``,
    after norm and RoPE). ``output`` (``(B, heads, N, head_dim)``, before the output projection) exists in
    ``attnkit_attention_output``.
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
    ):
        self.layer = layer
        self.name = name
        self.step = step
        self.timestep = timestep
        self.branches = branches
        self.layout = layout
        self.hidden_states = hidden_states
        self.scale = scale
        self._project = project
        self.q: torch.Tensor | None = None
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        self._logsumexp: torch.Tensor | None = None

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

        Works on ``(B, heads, N, d)`` tensors (q/k/v/output) and on ``(B, N, C)`` hidden states.
        """
        index = self.layout.span(span) if isinstance(span, str) else span
        token_dim = 2 if tensor.dim() == 4 else 1
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

    def logsumexp(self) -> torch.Tensor:
        """Each query row's log-sum-exp over all the keys it attends to, ``(B, heads, N)``.

        In ``attnkit_attention_output`` this is the kernel's own (free on CPU); earlier it is computed
        in chunks from q and k (it then ignores extra K/V, which do not exist yet).
        """
        if self._logsumexp is None:
            self._require_qk("logsumexp")
            self._logsumexp = chunked_logsumexp(self.q, self.k, scale=self.scale)
        return self._logsumexp

    def attention_probs(
        self,
        query_tokens: TokenIndex | str,
        key_tokens: TokenIndex | str,
        branch: str | None = None,
        heads: str | list[int] = "mean",
    ) -> torch.Tensor:
        """A slice of the softmax attention map, never the N x N map.

        ``query_tokens`` / ``key_tokens`` are spans (``"text"``, ``"video"``) or token indices into the
        sequence. Returns ``(rows, len(query_tokens), len(key_tokens))`` with ``heads="mean"``,
        ``(rows, len(heads), ...)`` for a list of head indices, or all heads with ``heads="all"``.
        Rows are ``branch``'s rows, or the whole batch.
        """
        self._require_qk("attention_probs")
        query_index = self._checked_index(query_tokens, "query_tokens")
        key_index = self._checked_index(key_tokens, "key_tokens")
        q, k, logsumexp = self.q, self.k, self.logsumexp()
        if branch is not None:
            q, k, logsumexp = self.branch(q, branch), self.branch(k, branch), self.branch(logsumexp, branch)
        if isinstance(heads, list):
            q, k, logsumexp = q[:, heads], k[:, heads], logsumexp[:, heads]
        probs = softmax_slice(q, k, logsumexp, query_index, key_index, scale=self.scale)
        return probs.mean(dim=1) if heads == "mean" else probs

    def _require_qk(self, what: str) -> None:
        if self.q is None or self.k is None:
            raise RuntimeError(f"{what} needs q and k, which exist from the attnkit_qkv hook on")

    def _checked_index(self, tokens: TokenIndex | str, argument: str) -> TokenIndex:
        if isinstance(tokens, str):
            return self.layout.span(tokens)
        num_tokens = self.q.shape[2]
        if isinstance(tokens, slice):
            return tokens
        index = torch.as_tensor(tokens, dtype=torch.long)
        if index.numel() and (index.min() < 0 or index.max() >= num_tokens):
            raise IndexError(
                f"{argument} {index.tolist()} out of range: this call has {num_tokens} tokens "
                f"(valid indices 0..{num_tokens - 1}; text {self.layout.text.start}:{self.layout.text.stop}, "
                f"video {self.layout.video.start}:{self.layout.video.stop})"
            )
        return index.to(self.q.device)

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
