"""The attention kernel: plain SDPA, SDPA over extra key/value blocks, and softmax slices via log-sum-exp.

Nothing here builds an N x N map. A slice of the softmax map for chosen query rows and key columns is
``exp(q_i . k_j * scale - logsumexp_i)``: it needs only each query row's log-sum-exp over all its keys,
which the CPU flash kernel returns for free and which :func:`chunked_logsumexp` computes otherwise in
O(chunk x N) memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

TokenIndex = slice | torch.Tensor | list[int] | range


@dataclass
class ExtraKV:
    """Extra keys and values that some queries may attend to, on top of their own.

    ``key`` and ``value`` have shape ``(len(rows), heads, M, head_dim)`` (or a leading 1 to share one block
    across rows). ``rows`` are the batch rows whose queries see them; ``query_tokens`` which of those rows'
    tokens (a slice or index list into the sequence; ``None`` = all). The softmax is exact over the union of
    the row's own keys and these: ``softmax([q K^T, q (key_scale * key)^T + score_bias] * scale)``,
    and the extra values are multiplied by ``value_scale``.
    """

    key: torch.Tensor
    value: torch.Tensor
    rows: list[int]
    query_tokens: TokenIndex | None = None
    key_scale: float = 1.0
    value_scale: float = 1.0
    score_bias: float | torch.Tensor | None = None
    source: str = field(default="", compare=False)  # plugin name, filled in by the session for error messages

    def scaled_key(self) -> torch.Tensor:
        return self.key if self.key_scale == 1.0 else self.key * self.key_scale

    def scaled_value(self) -> torch.Tensor:
        return self.value if self.value_scale == 1.0 else self.value * self.value_scale


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Exactly what diffusers' processors call, so an untouched model stays bit-identical."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0, is_causal=False)


def sdpa_with_logsumexp(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDPA that also returns each query row's log-sum-exp of scaled scores, shape ``(B, H, N)``.

    On CPU without a mask this is the flash kernel that ``F.scaled_dot_product_attention`` itself
    dispatches to, so the output is the same tensor and the log-sum-exp costs nothing extra.
    Elsewhere the output comes from :func:`sdpa` and the log-sum-exp from :func:`chunked_logsumexp`.
    """
    if q.device.type == "cpu" and attn_mask is None and q.dtype in (torch.float32, torch.float64, torch.bfloat16):
        output, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
        return output, logsumexp
    bias = attn_mask if attn_mask is not None and attn_mask.dtype != torch.bool else None
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        bias = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, float("-inf"))
    return sdpa(q, k, v, attn_mask), chunked_logsumexp(q, k, bias=bias)


def chunked_logsumexp(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float | None = None,
    bias: torch.Tensor | None = None,
    chunk_size: int = 1024,
    checkpointed: bool = False,
) -> torch.Tensor:
    """``logsumexp(q k^T * scale + bias, dim=-1)`` computed ``chunk_size`` query rows at a time.

    With ``checkpointed=True`` each chunk's score block is recomputed in backward instead of kept, so a
    gradient through the log-sum-exp also never holds more than one ``chunk_size x N`` block per head.
    """
    scale = default_scale(q.shape[-1]) if scale is None else scale

    def block_logsumexp(q_chunk: torch.Tensor, k_all: torch.Tensor, bias_chunk: torch.Tensor | None) -> torch.Tensor:
        scores = torch.matmul(q_chunk, k_all.transpose(-1, -2)) * scale
        if bias_chunk is not None:
            scores = scores + bias_chunk
        return torch.logsumexp(scores, dim=-1)

    pieces = []
    for start in range(0, q.shape[-2], chunk_size):
        stop = min(start + chunk_size, q.shape[-2])
        # A mask shared by all query rows has a query dimension of 1, which is not cut.
        bias_chunk = None if bias is None or bias.shape[-2] == 1 else bias[..., start:stop, :]
        if bias is not None and bias.shape[-2] == 1:
            bias_chunk = bias
        q_chunk = q[..., start:stop, :]
        if checkpointed and torch.is_grad_enabled():
            pieces.append(checkpoint(block_logsumexp, q_chunk, k, bias_chunk, use_reentrant=False))
        else:
            pieces.append(block_logsumexp(q_chunk, k, bias_chunk))
    return torch.cat(pieces, dim=-1)


def softmax_slice(
    q: torch.Tensor,
    k: torch.Tensor,
    logsumexp: torch.Tensor,
    query_index: TokenIndex,
    key_index: TokenIndex,
    scale: float | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Entries ``[..., i, j]`` of ``softmax(q k^T * scale + bias)`` for query rows ``query_index`` and key
    columns ``key_index``, given the rows' full log-sum-exp. ``bias`` (an additive mask, -inf for masked
    keys) is already cut to those rows and columns, or broadcastable to them.
    Shape ``(..., len(query_index), len(key_index))``."""
    scale = default_scale(q.shape[-1]) if scale is None else scale
    q_rows = q[..., query_index, :]
    k_cols = k[..., key_index, :]
    scores = torch.matmul(q_rows, k_cols.transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias
    return torch.exp(scores - logsumexp[..., query_index].unsqueeze(-1))


def attention_with_extras(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    extras: list[ExtraKV],
    want_logsumexp: bool = False,
    attn_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention where some rows' queries also see extra key/value blocks.

    Rows without extras, and tokens of a row that see no extra, take the plain kernel; the rest take the
    same kernel over the concatenation of own and visible extra keys, which is the exact softmax over the
    union. ``attn_mask`` (boolean or additive, broadcastable to ``(B, heads, Nq, Nk)``) masks the own keys;
    extra keys are never masked by it. Returns ``(output, logsumexp or None)``; the log-sum-exp is over
    each query's visible keys.
    """
    mask_bias = _as_4d_bias(attn_mask, q) if attn_mask is not None else None
    batch, _, num_tokens, _ = q.shape
    output = torch.empty_like(q)
    logsumexp = q.new_empty(q.shape[:-1], dtype=torch.float32) if want_logsumexp else None

    def run(q_part, k_part, v_part, bias=None):
        if want_logsumexp:
            return sdpa_with_logsumexp(q_part, k_part, v_part, bias)
        return sdpa(q_part, k_part, v_part, bias), None

    extras_by_row: dict[int, list[tuple[int, ExtraKV]]] = {}
    for extra in extras:
        for position, row in enumerate(extra.rows):
            extras_by_row.setdefault(row, []).append((position, extra))

    plain_rows = [row for row in range(batch) if row not in extras_by_row]
    if plain_rows:
        index = torch.tensor(plain_rows, device=q.device)
        out, lse = run(q[index], k[index], v[index], _rows_of(attn_mask, index))
        output[index] = out
        if logsumexp is not None:
            logsumexp[index] = lse.to(logsumexp.dtype)

    for row, row_extras in extras_by_row.items():
        # Which extras each query token sees; tokens with the same set share one kernel call.
        visible = torch.zeros(len(row_extras), num_tokens, dtype=torch.bool, device=q.device)
        for slot, (_, extra) in enumerate(row_extras):
            visible[slot, _as_index(extra.query_tokens, num_tokens)] = True
        patterns, token_group = torch.unique(visible.T, dim=0, return_inverse=True)
        for group, pattern in enumerate(patterns):
            tokens = torch.nonzero(token_group == group).flatten()
            q_part = q[row : row + 1, :, tokens]
            keys, values, biases = [k[row : row + 1]], [v[row : row + 1]], []
            for slot in torch.nonzero(pattern).flatten().tolist():
                position, extra = row_extras[slot]
                extra_position = position if extra.key.shape[0] > 1 else 0
                keys.append(extra.scaled_key()[extra_position : extra_position + 1])
                values.append(extra.scaled_value()[extra_position : extra_position + 1])
                biases.append((extra.score_bias, extra.key.shape[-2]))
            own_bias = None
            if mask_bias is not None:
                own_bias = mask_bias[row : row + 1] if mask_bias.shape[0] > 1 else mask_bias
                own_bias = own_bias[..., tokens, :] if own_bias.shape[-2] > 1 else own_bias
            bias = _score_bias(biases, k.shape[-2], q_part, len(tokens), own_bias) if biases else own_bias
            out, lse = run(q_part, torch.cat(keys, dim=-2), torch.cat(values, dim=-2), bias)
            output[row : row + 1, :, tokens] = out
            if logsumexp is not None:
                logsumexp[row : row + 1, :, tokens] = lse.to(logsumexp.dtype)
    return output, logsumexp


def _as_index(tokens: TokenIndex | None, num_tokens: int):
    return slice(None) if tokens is None else tokens


def _rows_of(attn_mask: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """The mask of batch rows ``index`` (a mask shared by all rows is returned as is)."""
    if attn_mask is None or attn_mask.dim() < 4 or attn_mask.shape[0] == 1:
        return attn_mask
    return attn_mask[index]


def _as_4d_bias(attn_mask: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A boolean (True = attend) or additive mask as a 4-D additive bias in q's dtype."""
    while attn_mask.dim() < 4:
        attn_mask = attn_mask.unsqueeze(0)
    if attn_mask.dtype == torch.bool:
        return torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, float("-inf"))
    return attn_mask.to(q.dtype)


def _score_bias(
    biases, num_own_keys: int, q_part: torch.Tensor, num_queries: int, own_bias: torch.Tensor | None = None
) -> torch.Tensor | None:
    """An additive mask: the model's mask (or zero) on own keys, each extra block's bias on its keys.

    None if everything is zero.
    """
    if own_bias is None and all(bias is None for bias, _ in biases):
        return None
    if own_bias is None:
        blocks = [q_part.new_zeros(num_queries, num_own_keys)]
    else:
        own_bias = own_bias.expand(*own_bias.shape[:-2], num_queries, num_own_keys)
        blocks = [own_bias]
    for bias, length in biases:
        block = q_part.new_zeros(num_queries, length)
        if bias is not None:
            block = block + torch.as_tensor(bias, dtype=q_part.dtype, device=q_part.device)
        blocks.append(block.expand(*blocks[0].shape[:-1], length))
    return torch.cat(blocks, dim=-1)
