"""The attention kernel: plain SDPA, SDPA over extra key/value blocks, and softmax slices via log-sum-exp.

Nothing here builds an N x N map. A slice of the softmax map for chosen query rows and key columns is
``exp(q_i . k_j * scale - logsumexp_i)``: it needs only each query row's log-sum-exp over all its keys,
which the fused SDPA kernels return for free and which :func:`chunked_logsumexp` computes otherwise in
score blocks of bounded size.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .masks import additive_bias, as_4d

TokenIndex = slice | torch.Tensor | list[int] | range


@dataclass
class ExtraKV:
    """Extra keys and values that some queries may attend to, on top of their own.

    ``key`` and ``value`` have shape ``(len(rows), heads, M, head_dim)`` (or a leading 1 to share one block
    across rows). ``rows`` are the batch rows whose queries see them; ``query_tokens`` which of those rows'
    tokens (a slice or index list into the sequence; ``None`` = all). The softmax is exact over the union of
    the row's own keys and these: ``softmax([q K^T * scale, q (key_scale * key)^T * scale + score_bias])``,
    and the extra values are multiplied by ``value_scale``. ``score_bias`` is a float, or a tensor of shape
    ``(M,)``, ``(heads, M)`` or ``(heads, N, M)`` (per query token of the sequence; any dimension may be 1).
    A bias that differs per query is built for a block of queries at a time, never for all of them.

    ``competes_with`` (own key positions) limits whom the extra keys take attention from: those own keys
    and the extras share the attention mass the own keys had without the extras, and every other own key
    keeps exactly its share. E.g. in joint attention, extra video keys that compete only with the video keys
    leave the prompt keys' share of each query untouched. ``None`` is one softmax over all own and extra keys.
    """

    key: torch.Tensor
    value: torch.Tensor
    rows: list[int]
    query_tokens: TokenIndex | None = None
    key_scale: float = 1.0
    value_scale: float = 1.0
    score_bias: float | torch.Tensor | None = None
    competes_with: TokenIndex | None = None
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

    Where ``F.scaled_dot_product_attention`` would dispatch to a fused kernel that computes the
    log-sum-exp anyway (the CPU flash kernel for every dtype and mask; on CUDA the flash, memory-efficient
    or cuDNN kernel), that kernel is called directly, so the output is the same tensor and the log-sum-exp
    costs nothing extra. Otherwise the output comes from :func:`sdpa` and the log-sum-exp from
    :func:`chunked_logsumexp`, in blocks of bounded size.
    """
    bias = None if attn_mask is None else additive_bias(attn_mask, q.dtype, q.device)
    fused = _fused_with_logsumexp(q, k, v, bias)
    if fused is not None:
        return fused
    return sdpa(q, k, v, attn_mask), chunked_logsumexp(q, k, bias=bias)


_SDP_FLASH, _SDP_EFFICIENT, _SDP_CUDNN = 1, 2, 3  # torch.nn.attention.SDPBackend values
_fused_failures: set[str] = set()


def _fused_with_logsumexp(q, k, v, bias):
    """(output, log-sum-exp) from the fused kernel SDPA itself would pick, or None where it picks none.

    The choice is ``torch._fused_sdp_choice``, the function SDPA dispatches with, so the output is
    bit-identical to :func:`sdpa`'s. The private CUDA kernels' signatures may change between torch
    releases: if one fails, the exact chunked path is used instead and a warning says so once.
    """
    backend = torch._fused_sdp_choice(q, k, v, bias)
    if q.device.type == "cpu":
        if backend != _SDP_FLASH:
            return None
        output, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=bias)
        return output, logsumexp
    if q.device.type != "cuda" or backend not in (_SDP_FLASH, _SDP_EFFICIENT, _SDP_CUDNN):
        return None
    if backend == _SDP_CUDNN and bias is not None:
        # cuDNN may pick another engine for a mask laid out differently from SDPA's: not bit-identical.
        return None
    name = {_SDP_FLASH: "flash", _SDP_EFFICIENT: "efficient", _SDP_CUDNN: "cudnn"}[backend]
    if name in _fused_failures:
        return None
    try:
        if backend == _SDP_FLASH:
            output, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[:2]
        elif backend == _SDP_EFFICIENT:
            mask = None if bias is None else _aligned_bias(bias, q, k)
            output, logsumexp = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, mask, True)[:2]
        else:
            output, logsumexp = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True)[:2]
    except (RuntimeError, TypeError) as error:
        _fused_failures.add(name)
        warnings.warn(
            f"the CUDA {name} attention kernel did not return a log-sum-exp ({type(error).__name__}: {error}); "
            "attention maps fall back to the exact chunked log-sum-exp (slower, same results). "
            "Report this with your torch version.",
            stacklevel=3,
        )
        return None
    # The memory-efficient kernel pads its log-sum-exp's query dimension; cuDNN's may carry a trailing 1.
    logsumexp = logsumexp.reshape(*logsumexp.shape[:2], -1)[..., : q.shape[2]]
    return output, logsumexp


def _aligned_bias(bias: torch.Tensor, q: torch.Tensor, k: torch.Tensor, alignment: int = 16) -> torch.Tensor:
    """The memory-efficient kernel's bias as SDPA prepares it: rows padded to ``alignment``, then expanded."""
    if bias.stride(-1) == 1 and all(stride % alignment == 0 for stride in bias.stride()[:-1]):
        aligned = bias
    else:
        length = bias.shape[-1]
        aligned = F.pad(bias, (0, -length % alignment))[..., :length]
    return aligned.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])


# One score block of the chunked paths on a CPU: at most BLOCK_ELEMENTS scores (2 MiB in fp32), at most
# KEY_BLOCK keys wide. A block that fits in cache lets its matmul run near peak speed (a block spanning
# all 17,776 keys of a real model ran the matmul at half speed). On an accelerator each block costs
# kernel launches, so blocks are larger (DEVICE_BLOCK_ELEMENTS, 256 MiB in fp32) and span all keys.
# Both are far below an N x N map at real sizes (60 GB for CogVideoX-5B's CFG pair in bf16).
BLOCK_ELEMENTS = 2**19
KEY_BLOCK = 1024
DEVICE_BLOCK_ELEMENTS = 2**26


def chunked_logsumexp(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float | None = None,
    bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``logsumexp(q k^T * scale + bias, dim=-1)`` in score blocks of at most :data:`BLOCK_ELEMENTS`.

    A block is some heads of one batch row, some query rows (at most ``chunk_size``) and some keys; the
    log-sum-exp is accumulated over key blocks with a running maximum, as flash attention does. ``bias``
    (an additive mask, broadcastable to ``(B, H, Nq, Nk)``) is never expanded. Differentiable in ``q``
    and ``k`` (not ``bias``): the backward recomputes each block's probabilities, so a gradient also
    never holds more than one block.
    """
    scale = default_scale(q.shape[-1]) if scale is None else scale
    if bias is not None:
        bias = as_4d(bias)
    batch = max(q.shape[0], k.shape[0])
    heads = max(q.shape[1], k.shape[1])
    q = q.expand(batch, heads, *q.shape[2:])
    k = k.expand(batch, heads, *k.shape[2:])
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        return _BlockedLogSumExp.apply(q, k, scale, bias, chunk_size)
    return _blocked_logsumexp(q, k, scale, bias, chunk_size)


def _block_shape(q: torch.Tensor, k: torch.Tensor, chunk_size: int | None) -> tuple[int, int, int]:
    """(heads, query rows, keys) of one score block."""
    heads, num_queries, num_keys = q.shape[1], q.shape[2], k.shape[2]
    if q.device.type == "cpu":
        budget, keys = BLOCK_ELEMENTS, max(1, min(num_keys, KEY_BLOCK, BLOCK_ELEMENTS))
    else:
        budget, keys = DEVICE_BLOCK_ELEMENTS, max(1, num_keys)
    rows = max(1, min(num_queries, budget // keys, chunk_size or num_queries))
    whole = rows == num_queries and keys == num_keys
    heads_per_block = max(1, min(heads, budget // (rows * keys))) if whole else 1
    return heads_per_block, rows, keys


def _query_blocks(q: torch.Tensor, k: torch.Tensor, chunk_size: int | None):
    """(batch row, head slice, query slice) covering ``(B, H, Nq)``."""
    heads_per_block, rows, _ = _block_shape(q, k, chunk_size)
    for row in range(q.shape[0]):
        for head in range(0, q.shape[1], heads_per_block):
            for start in range(0, q.shape[2], rows):
                yield row, slice(head, head + heads_per_block), slice(start, start + rows)


def _key_slices(q: torch.Tensor, k: torch.Tensor, chunk_size: int | None):
    keys = _block_shape(q, k, chunk_size)[2]
    return [slice(start, start + keys) for start in range(0, k.shape[2], keys)]


def _bias_block(bias: torch.Tensor | None, row: int, heads: slice, queries: slice, keys: slice):
    if bias is None:
        return None
    block = bias[row if bias.shape[0] > 1 else 0]
    block = block[heads] if block.shape[0] > 1 else block
    block = block[:, queries] if block.shape[1] > 1 else block
    return block[..., keys] if block.shape[2] > 1 else block


def _block_scores(q_block, k_block, scale, bias_block):
    """``q k^T * scale + bias`` of one block."""
    if bias_block is None:
        return torch.bmm(q_block * scale, k_block.transpose(-1, -2))
    bias_block = bias_block.to(q_block.dtype).expand(q_block.shape[0], q_block.shape[1], k_block.shape[1])
    return torch.baddbmm(bias_block, q_block, k_block.transpose(-1, -2), alpha=scale)


def _finite(values: torch.Tensor) -> torch.Tensor:
    """-inf (a row whose keys are all masked so far) as 0, so its exp stays 0 and no NaN appears."""
    return torch.where(torch.isfinite(values), values, torch.zeros_like(values))


def _blocked_logsumexp(q, k, scale, bias, chunk_size) -> torch.Tensor:
    # Half-precision inputs get a float32 log-sum-exp, as the fused kernels return it.
    dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    logsumexp = q.new_empty(q.shape[:3], dtype=dtype)
    key_slices = _key_slices(q, k, chunk_size)
    for row, heads, queries in _query_blocks(q, k, chunk_size):
        q_block = q[row, heads, queries]
        maximum = total = None
        for keys in key_slices:
            scores = _block_scores(q_block, k[row, heads, keys], scale, _bias_block(bias, row, heads, queries, keys))
            scores = scores.to(dtype)
            block_maximum = scores.amax(dim=-1)
            if maximum is None:
                maximum = _finite(block_maximum)
                total = scores.sub_(maximum.unsqueeze(-1)).exp_().sum(dim=-1)
                continue
            new_maximum = torch.maximum(maximum, _finite(block_maximum))
            total = total * torch.exp(maximum - new_maximum)
            total += scores.sub_(new_maximum.unsqueeze(-1)).exp_().sum(dim=-1)
            maximum = new_maximum
        logsumexp[row, heads, queries] = total.log_().add_(maximum)
    return logsumexp


class _BlockedLogSumExp(torch.autograd.Function):
    """:func:`chunked_logsumexp` with a blocked backward: ``d lse_i = g_i``, ``p_ij = exp(s_ij - lse_i)``,
    ``dq_i = scale * g_i * sum_j p_ij k_j`` and ``dk_j = scale * sum_i g_i p_ij q_i``, one block at a time."""

    @staticmethod
    def forward(ctx, q, k, scale, bias, chunk_size):
        logsumexp = _blocked_logsumexp(q, k, scale, bias, chunk_size)
        ctx.save_for_backward(q, k, logsumexp)
        ctx.bias, ctx.scale, ctx.chunk_size = bias, scale, chunk_size
        return logsumexp

    @staticmethod
    def backward(ctx, grad_logsumexp):
        q, k, logsumexp = ctx.saved_tensors
        scale = ctx.scale
        grad_q, grad_k = torch.zeros_like(q), torch.zeros_like(k)
        finite = _finite(logsumexp)
        key_slices = _key_slices(q, k, ctx.chunk_size)
        for row, heads, queries in _query_blocks(q, k, ctx.chunk_size):
            q_block = q[row, heads, queries]
            grad = grad_logsumexp[row, heads, queries].unsqueeze(-1).to(q.dtype) * scale
            weighted_queries = q_block * grad
            row_logsumexp = finite[row, heads, queries].unsqueeze(-1)
            for keys in key_slices:
                k_block = k[row, heads, keys]
                probs = _block_scores(q_block, k_block, scale, _bias_block(ctx.bias, row, heads, queries, keys))
                probs = probs.sub_(row_logsumexp.to(probs.dtype)).exp_()
                grad_q[row, heads, queries] += torch.bmm(probs, k_block).mul_(grad)
                grad_k[row, heads, keys] += torch.bmm(probs.transpose(-1, -2), weighted_queries)
        return grad_q, grad_k, None, None, None


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


class ExtrasResult(NamedTuple):
    """What :func:`attention_with_extras` computed.

    ``logsumexp`` is each query's normaliser over its visible keys (None unless asked for). Where an extra
    block ``competes_with`` some own keys, the own keys outside that set keep their own normaliser:
    ``outside_logsumexp`` (the plain log-sum-exp over the row's own keys, equal to ``logsumexp`` where no
    such block is visible), and ``competing_keys`` (a boolean mask over the own keys) says which keys use
    ``logsumexp``. Both are None when no visible block limits whom it competes with.
    """

    output: torch.Tensor
    logsumexp: torch.Tensor | None
    outside_logsumexp: torch.Tensor | None = None
    competing_keys: torch.Tensor | None = None


def attention_with_extras(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    extras: list[ExtraKV],
    want_logsumexp: bool = False,
    attn_mask: torch.Tensor | None = None,
) -> ExtrasResult:
    """Attention where some rows' queries also see extra key/value blocks.

    Rows without extras, and tokens of a row that see no extra, take the plain kernel; the rest take the
    same kernel over the concatenation of own and visible extra keys, which is the exact softmax over the
    union. ``attn_mask`` (boolean or additive, broadcastable to ``(B, heads, Nq, Nk)``) masks the own keys;
    extra keys are never masked by it. Blocks with ``competes_with`` are combined as
    :class:`ExtraKV` describes (see :func:`_kept_share_attention`). Returns an :class:`ExtrasResult`
    (``output, logsumexp = result[:2]``).
    """
    mask_bias = additive_bias(attn_mask, q.dtype, q.device) if attn_mask is not None else None
    batch, _, num_tokens, _ = q.shape
    num_keys = k.shape[-2]
    competing = _competing_keys(extras, num_keys, k.device)
    output = torch.empty_like(q)
    logsumexp = q.new_empty(q.shape[:-1], dtype=torch.float32) if want_logsumexp else None
    outside_logsumexp = None
    if want_logsumexp and competing is not None:
        outside_logsumexp = q.new_empty(q.shape[:-1], dtype=torch.float32)

    def store(rows, tokens, out, lse, outside_lse=None):
        output[rows, :, tokens] = out
        if logsumexp is not None:
            logsumexp[rows, :, tokens] = lse.to(logsumexp.dtype)
        if outside_logsumexp is not None:
            outside_logsumexp[rows, :, tokens] = (lse if outside_lse is None else outside_lse).to(logsumexp.dtype)

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
        store(index, slice(None), out, lse)

    for row, row_extras in extras_by_row.items():
        # Which extras each query token sees; tokens with the same set share one kernel call.
        visible = torch.zeros(len(row_extras), num_tokens, dtype=torch.bool, device=q.device)
        for slot, (_, extra) in enumerate(row_extras):
            visible[slot, _as_index(extra.query_tokens, num_tokens)] = True
        patterns, token_group = torch.unique(visible.T, dim=0, return_inverse=True)
        for group, pattern in enumerate(patterns):
            tokens = torch.nonzero(token_group == group).flatten()
            q_part = q[row : row + 1, :, tokens]
            extra_keys, extra_values, biases, limited = [], [], [], False
            for slot in torch.nonzero(pattern).flatten().tolist():
                position, extra = row_extras[slot]
                extra_position = position if extra.key.shape[0] > 1 else 0
                extra_keys.append(extra.scaled_key()[extra_position : extra_position + 1])
                extra_values.append(extra.scaled_value()[extra_position : extra_position + 1])
                biases.append((extra.score_bias, extra.key.shape[-2]))
                limited |= extra.competes_with is not None
            own_bias = None
            if mask_bias is not None:
                own_bias = mask_bias[row : row + 1] if mask_bias.shape[0] > 1 else mask_bias
            own_keys, own_values = k[row : row + 1], v[row : row + 1]

            def attend(q_block, query_tokens=None):
                if not biases:
                    bias = own_bias
                    if query_tokens is not None:
                        bias = _score_bias([], num_keys, q_part, own_bias, query_tokens)
                    return (*run(q_block, own_keys, own_values, bias), None)
                if limited and competing is not None:
                    return _kept_share_attention(
                        q_block, own_keys, own_values, torch.cat(extra_keys, dim=-2),
                        torch.cat(extra_values, dim=-2), biases, competing, own_bias, q_part, query_tokens,
                    )
                keys = torch.cat([own_keys, *extra_keys], dim=-2)
                values = torch.cat([own_values, *extra_values], dim=-2)
                bias = _score_bias(biases, num_keys, q_part, own_bias, query_tokens)
                return (*run(q_block, keys, values, bias), None)

            if not _per_query(own_bias, biases):
                store(slice(row, row + 1), tokens, *attend(q_part))
                continue
            # A bias that differs per query is built for a block of queries at a time, never for all.
            num_visible = num_keys + sum(length for _, length in biases)
            rows_per_block = max(1, BLOCK_ELEMENTS // (q.shape[1] * num_visible))
            for start in range(0, len(tokens), rows_per_block):
                block = tokens[start : start + rows_per_block]
                store(slice(row, row + 1), block, *attend(q_part[:, :, start : start + rows_per_block], block))
    return ExtrasResult(output, logsumexp, outside_logsumexp, competing if outside_logsumexp is not None else None)


def _competing_keys(extras: list[ExtraKV], num_keys: int, device) -> torch.Tensor | None:
    """The one own-key set the blocks of this call compete with (a boolean mask), or None for none.

    A set covering every own key is the plain union softmax, so it counts as none (and stays bit-identical
    to it). Blocks of one call that name different sets cannot share a normaliser per key and are refused.
    """
    masks = []
    for extra in extras:
        if extra.competes_with is None:
            continue
        mask = torch.zeros(num_keys, dtype=torch.bool, device=device)
        mask[_as_index(extra.competes_with, num_keys)] = True
        if not mask.any():
            raise ValueError(
                f"ExtraKV from {extra.source or 'a plugin'}: competes_with selects none of the {num_keys} own "
                "keys, so its keys would get no attention; give the own keys it should share with, or None"
            )
        masks.append(mask)
    if not masks:
        return None
    if any(not torch.equal(mask, masks[0]) for mask in masks[1:]):
        raise ValueError(
            "the extra K/V blocks of one attention call name different competes_with key sets; they must name "
            "the same own keys (or None)"
        )
    return None if masks[0].all() else masks[0]


def _kept_share_attention(q_block, own_keys, own_values, extra_keys, extra_values, biases, competing,
                          own_bias, q_part, query_tokens):
    """Attention in which the extra keys share only the competing own keys' attention mass.

    With ``C`` the competing own keys, ``P`` the others and ``E`` the extras, the plain softmax gives
    ``P`` the share ``m = sigmoid(lse_P - lse_C)``. The result keeps it: ``m * attn(P) + (1 - m) *
    attn(C + E)``, i.e. ``P``'s weights are exactly as without extras and ``C`` and ``E`` split the rest
    in one softmax. Three kernel calls over ``P``, ``C`` and ``E`` cost what one call over all of them
    costs; their log-sum-exps combine them exactly. Returns ``(output, logsumexp of C + E, logsumexp over
    all own keys)``: each own key's probability is ``exp(score - lse)`` with the first normaliser for keys
    in ``C`` and the second for ``P``.
    """
    inside = torch.nonzero(competing).flatten()
    outside = torch.nonzero(~competing).flatten()

    def own_part(keys):
        bias = None if own_bias is None else _score_bias([], len(keys), q_part, own_bias[..., keys], query_tokens)
        return sdpa_with_logsumexp(q_block, own_keys[:, :, keys], own_values[:, :, keys], bias)

    outside_out, outside_lse = own_part(outside)
    inside_out, inside_lse = own_part(inside)
    extra_out, extra_lse = sdpa_with_logsumexp(
        q_block, extra_keys, extra_values, _score_bias(biases, 0, q_part, None, query_tokens)
    )
    union_lse = torch.logaddexp(inside_lse, extra_lse)

    def weight(first_lse, second_lse):  # the first part's share of the two, per query
        return torch.sigmoid(first_lse - second_lse).unsqueeze(-1).to(q_block.dtype)

    union_out = torch.lerp(extra_out, inside_out, weight(inside_lse, extra_lse))
    output = torch.lerp(union_out, outside_out, weight(outside_lse, inside_lse))
    own_lse = torch.logaddexp(outside_lse, inside_lse)
    return output, own_lse + union_lse - inside_lse, own_lse


def _as_index(tokens: TokenIndex | None, num_tokens: int):
    return slice(None) if tokens is None else tokens


def _rows_of(attn_mask: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """The mask of batch rows ``index`` (a mask shared by all rows is returned as is)."""
    if attn_mask is None or attn_mask.dim() < 4 or attn_mask.shape[0] == 1:
        return attn_mask
    return attn_mask[index]


def _bias_4d(bias: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An extra block's ``score_bias`` as ``(1, heads or 1, queries or 1, keys or 1)``.

    A float is one bias for all; a tensor is ``(keys,)``, ``(heads, keys)`` or ``(heads, tokens, keys)``
    with ``tokens`` the sequence positions of the row's queries (any of these dimensions may be 1).
    """
    bias = torch.as_tensor(bias, dtype=like.dtype, device=like.device)
    if bias.dim() == 2:
        bias = bias.unsqueeze(1)
    while bias.dim() < 4:
        bias = bias.unsqueeze(0)
    return bias


def _per_query(own_bias: torch.Tensor | None, biases) -> bool:
    """Whether the model's mask or any extra block's ``score_bias`` differs between query tokens."""
    if own_bias is not None and own_bias.shape[-2] > 1:
        return True
    return any(isinstance(bias, torch.Tensor) and bias.dim() >= 3 and bias.shape[-2] > 1 for bias, _ in biases)


def _score_bias(
    biases, num_own_keys: int, q_part: torch.Tensor, own_bias: torch.Tensor | None = None,
    query_tokens: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """An additive mask: the model's mask (or zero) on own keys, each extra block's bias on its keys.

    Shape ``(1, heads or 1, 1, keys)`` when no part differs per query, so the kernel broadcasts it over
    the queries; otherwise ``(1, heads or 1, len(query_tokens), keys)`` for those sequence positions
    only. None if everything is zero.
    """
    if own_bias is None and all(bias is None for bias, _ in biases):
        return None
    parts = [q_part.new_zeros(1, 1, 1, num_own_keys) if own_bias is None else own_bias]
    for bias, length in biases:
        parts.append(q_part.new_zeros(1, 1, 1, length) if bias is None else _bias_4d(bias, q_part))
    if query_tokens is not None:
        parts = [part[..., query_tokens, :] if part.shape[-2] > 1 else part for part in parts]
    heads = max(part.shape[1] for part in parts)
    queries = max(part.shape[2] for part in parts)
    lengths = [num_own_keys] + [length for _, length in biases]
    for part, length in zip(parts, lengths):
        if part.shape[-1] not in (1, length) or part.shape[1] not in (1, heads) or part.shape[0] != 1:
            raise ValueError(
                f"a score bias of shape {tuple(part.shape)} does not fit its {length} keys: an extra block's "
                "score_bias must be a float or a tensor of shape (keys,), (heads, keys) or "
                "(heads, sequence tokens, keys) for that block's keys (any dimension may be 1)"
            )
    return torch.cat(
        [part.expand(1, heads, queries, length) for part, length in zip(parts, lengths)], dim=-1
    ).contiguous()
