"""ASM (appearance separation): push the target's video away from the reference subject's words.

docs/method.md, "ASM", eq. 7-9. Keys are the reference prompt tokens followed by the target video tokens,
``K = [K^p_ref ; K^v_tar]``; with ``S`` the reference subject tokens:

- eq. 7, ``W^T2V = softmax(Q^v_tar K^T / sqrt(d))[:, S]`` (video rows, subject columns) and
  ``W^V2T = softmax(Q^p_ref[S] K^T / sqrt(d))[:, video]`` (subject rows, video columns);
- eq. 8, ``L_attn`` = mean of the top ``top_fraction`` (1/5) of those values (both blocks together,
  after the head mean — a [choice]);
- eq. 9, ``h^v_tar <- h^v_tar - eta * dL_attn/dh^v_tar`` with the model frozen.

``h^v_tar`` are the target rows' video hidden states entering the attention layer; the step happens in
``attnkit_before_attention``, so the layer then projects q/k/v from the moved states. The gradient is
local to the layer: ``call.project`` (norm -> q/k projections -> RoPE) under ``torch.enable_grad()``,
nothing else. The normaliser of ``W^T2V`` runs over all ``len(K)`` keys for every video query; on CPU
it runs forward and backward through the fused flash-attention kernel (O(N) memory per head), elsewhere
through ``chunked_logsumexp``, whose backward recomputes one bounded score block at a time.
Neither forms an N x N map.

Choices: one step per layer per denoising step while ``step < asm_steps``; all layers unless ``layers``;
only the conditional CFG row (``cfg_rows="cond"``, the default: the loss is about the text condition, as
attention-guidance methods compute theirs on the conditional branch, and it halves ASM's cost) or both
rows (``"both"``; each row's loss moves only its own states, so CFG does not amplify the move).
The caller adds ASM only when the reference and target subjects differ.

Roles (``attnkit_roles = {"joint", "cross"}``: the calls holding the video-text map). In a joint call
(CogVideoX, HunyuanVideo) the loss is eq. 7-8 as above. A cross call (Wan ``attn2``) has neither text
queries nor video keys, so ``W^V2T`` does not exist and the model's own softmax of video queries runs over
the prompt's keys only. There the loss is the cross-attention form of eq. 7: ``W^T2V = softmax(Q^v_tar
[K^p_ref]^T / sqrt(d))[:, S]`` — the map the target video queries would have over the *reference* prompt
(image keys of image-to-video have a softmax of their own and do not enter it), with ``Q^v_tar`` from the
target rows' hidden states entering ``attn2`` — and eq. 8-9 unchanged (top fraction, mean, one step on
those states). Self calls (Wan ``attn1``) hold no text and are skipped.

The reference prompt's tokens are those the model lets the reference row attend to: where the model
masks text padding (HunyuanVideo), the masked tokens of the reference row are left out of ``K^p_ref``
and ``Q^p_ref``, as the model's own softmax leaves them out.
"""

from __future__ import annotations

import math

import torch

import attnkit
from attnkit.kernel import chunked_logsumexp
from attnkit.masks import visible_keys

from .rmtm import TARGET_BRANCHES


class ASM:
    """Plugin: one gradient step of size ``eta`` on the target video hidden states per layer."""

    name = "lmp.asm"
    attnkit_roles = frozenset({"joint", "cross"})

    def __init__(
        self,
        subject_tokens: list[int],
        eta: float = 100.0,
        asm_steps: int = 35,
        top_fraction: float = 0.2,
        layers: list[int] | None = None,
        cfg_rows: str = "cond",
        chunk_size: int = 128,
        reference_branch: str = "reference",
    ):
        if not subject_tokens:
            raise ValueError("ASM needs at least one reference subject token position")
        if not 0 < top_fraction <= 1:
            raise ValueError(f"top_fraction={top_fraction!r} must be in (0, 1] (the paper uses 0.2)")
        if cfg_rows not in TARGET_BRANCHES:
            raise ValueError(f"cfg_rows={cfg_rows!r} must be one of {sorted(TARGET_BRANCHES)}")
        self.subject_tokens = list(subject_tokens)
        self.eta = eta
        self.asm_steps = asm_steps
        self.top_fraction = top_fraction
        self.layers = None if layers is None else set(layers)
        self.target_branches = TARGET_BRANCHES[cfg_rows]
        self.chunk_size = chunk_size
        self.reference_branch = reference_branch
        self.losses: list[tuple[int, int, float]] = []  # (step, layer, L_attn before the step)
        # (step, layer, |eta * gradient| / |h|): how far each step moved the target's video hidden states
        # relative to their size, the scale to tune eta against for a given model.
        self.relative_steps: list[tuple[int, int, float]] = []

    @property
    def attnkit_where(self) -> attnkit.Where:
        """Where steps are taken: calls holding the reference branch, in the first ``asm_steps`` steps, in
        ``layers`` (all by default). ``eta`` 0 takes no step, so it fires at no step."""
        steps = range(self.asm_steps) if self.eta != 0 else ()
        return attnkit.Where(steps=steps, layers=self.layers, branches=(self.reference_branch,))

    @attnkit.hookimpl
    def attnkit_session_start(self, session):
        self.losses = []
        self.relative_steps = []

    @attnkit.hookimpl
    def attnkit_before_attention(self, call):
        target_rows = [
            row for branch in self.target_branches if call.has_branch(branch) for row in call.rows(branch)
        ]
        if not target_rows:
            return
        reference_row = call.rows(self.reference_branch)[0]
        if call.layout.role == "cross":
            self._step_cross(call, target_rows, reference_row)
            return
        hidden_states = call.hidden_states
        video, text = call.layout.video, call.layout.text
        kept, subject_tokens = self._reference_tokens(call, reference_row, text)
        # The reference's text q/k are constants of the loss: projected outside autograd.
        reference_q, reference_k, _ = call.project(hidden_states[reference_row : reference_row + 1].detach())
        reference_q, reference_k = reference_q[:, :, text][:, :, kept], reference_k[:, :, text][:, :, kept]
        with torch.enable_grad():
            target_states = hidden_states[target_rows].detach().requires_grad_(True)
            q, k, _ = call.project(target_states)
            loss = sum(
                appearance_loss(
                    target_video_queries=q[i : i + 1, :, video],
                    target_video_keys=k[i : i + 1, :, video],
                    reference_text_queries=reference_q,
                    reference_text_keys=reference_k,
                    subject_tokens=subject_tokens,
                    top_fraction=self.top_fraction,
                    scale=call.scale,
                    chunk_size=self.chunk_size,
                )
                for i in range(len(target_rows))
            )
            (gradient,) = torch.autograd.grad(loss, target_states)
        self._take_step(call, target_rows, video, loss, gradient)

    def _reference_tokens(self, call, reference_row: int, text: slice) -> tuple[torch.Tensor | slice, list[int]]:
        """(the reference prompt's text positions the model lets it attend to, the subject tokens among them).

        A text token counts when the call's attention mask lets every query of the reference row see it
        (all tokens without a mask); subject positions are renumbered within the kept tokens.
        """
        if call.attention_mask is None:
            return slice(None), self.subject_tokens
        num_text = text.stop - text.start
        visible = visible_keys(call.attention_mask)
        row_visible = visible[reference_row if visible.shape[0] > 1 else 0][..., text]
        kept = torch.nonzero(row_visible.reshape(-1, num_text).all(dim=0)).flatten().cpu()
        position = {int(token): index for index, token in enumerate(kept)}
        hidden = [token for token in self.subject_tokens if token not in position]
        if hidden:
            raise ValueError(
                f"reference subject tokens {hidden} are masked in the reference row at layer {call.name} "
                "(text padding); the subject must be among the reference prompt's own tokens"
            )
        return kept, [position[token] for token in self.subject_tokens]

    def _take_step(self, call, target_rows: list[int], video: slice, loss, gradient: torch.Tensor) -> None:
        """Eq. 9 on the target rows' video hidden states; record the loss before the step."""
        self.losses.append((call.step, call.layer, float(loss.detach()) / len(target_rows)))
        hidden_states = call.hidden_states
        move = self.eta * gradient[:, video].float()
        size = hidden_states[target_rows, video].float().norm().clamp_min(torch.finfo(torch.float32).tiny)
        self.relative_steps.append((call.step, call.layer, float(move.norm() / size)))
        moved = hidden_states.clone()
        moved[target_rows, video] = hidden_states[target_rows, video] - self.eta * gradient[:, video].to(
            hidden_states.dtype
        )
        call.hidden_states = moved

    def _step_cross(self, call, target_rows: list[int], reference_row: int) -> None:
        """Eq. 9 with the cross-call loss (W^T2V over the reference prompt's keys; module docstring)."""
        hidden_states = call.hidden_states
        video, text = call.layout.query_span("video"), call.layout.key_span("text")
        kept, subject_tokens = self._reference_tokens(call, reference_row, text)
        # A cross call's keys come from each row's prompt, not from the hidden states: the reference
        # row's are constants of the loss, projected once outside autograd (one query row suffices).
        with torch.no_grad():
            _, keys, _ = call.project(hidden_states[reference_row : reference_row + 1].detach())
        reference_keys = keys[reference_row : reference_row + 1, :, text][:, :, kept]
        with torch.enable_grad():
            target_states = hidden_states[target_rows].detach().requires_grad_(True)
            q, _, _ = call.project(target_states)
            loss = sum(
                cross_appearance_loss(
                    target_video_queries=q[i : i + 1, :, video],
                    reference_text_keys=reference_keys,
                    subject_tokens=subject_tokens,
                    top_fraction=self.top_fraction,
                    scale=call.scale,
                )
                for i in range(len(target_rows))
            )
            (gradient,) = torch.autograd.grad(loss, target_states)
        self._take_step(call, target_rows, video, loss, gradient)


def cross_appearance_loss(
    target_video_queries: torch.Tensor,
    reference_text_keys: torch.Tensor,
    subject_tokens: list[int],
    top_fraction: float = 0.2,
    scale: float | None = None,
) -> torch.Tensor:
    """``L_attn`` of a cross call for one target row: the top ``top_fraction`` of ``W^T2V``, averaged.

    ``W^T2V = softmax(Q^v_tar [K^p_ref]^T * scale)[:, subject_tokens]``, head-mean; inputs
    ``(1, heads, tokens, head_dim)``. The map is video x text, never video x video.
    """
    scale = 1.0 / math.sqrt(target_video_queries.shape[-1]) if scale is None else scale
    scores = torch.matmul(target_video_queries, reference_text_keys.transpose(-1, -2)) * scale
    video_to_subject = torch.softmax(scores, dim=-1)[..., subject_tokens]
    values = video_to_subject.mean(dim=1).flatten()
    keep = max(1, math.ceil(top_fraction * values.numel()))
    return torch.topk(values, keep).values.mean()


def appearance_loss(
    target_video_queries: torch.Tensor,
    target_video_keys: torch.Tensor,
    reference_text_queries: torch.Tensor,
    reference_text_keys: torch.Tensor,
    subject_tokens: list[int],
    top_fraction: float = 0.2,
    scale: float | None = None,
    chunk_size: int = 128,
    fused: bool | None = None,
) -> torch.Tensor:
    """``L_attn`` of eq. 7-8 for one target row; all inputs ``(1, heads, tokens, head_dim)``.

    ``subject_tokens`` index the reference text tokens. Differentiable; never forms an N x N map.
    ``fused`` chooses how the softmax normaliser is computed (see :func:`differentiable_logsumexp`).
    """
    scale = 1.0 / math.sqrt(target_video_queries.shape[-1]) if scale is None else scale
    keys = torch.cat([reference_text_keys, target_video_keys], dim=2)  # [K^p_ref ; K^v_tar]
    subject_keys = reference_text_keys[:, :, subject_tokens]
    subject_queries = reference_text_queries[:, :, subject_tokens]
    num_text = reference_text_keys.shape[2]

    # W^T2V: video rows over all keys, subject columns; the normaliser never materialises the map.
    video_logsumexp = differentiable_logsumexp(target_video_queries, keys, scale, chunk_size, fused)
    video_to_subject = torch.exp(
        torch.matmul(target_video_queries, subject_keys.transpose(-1, -2)) * scale
        - video_logsumexp.unsqueeze(-1)
    )
    # W^V2T: the few subject rows over all keys, video columns.
    subject_scores = torch.matmul(subject_queries, keys.transpose(-1, -2)) * scale
    subject_to_video = torch.softmax(subject_scores, dim=-1)[..., num_text:]

    values = torch.cat([video_to_subject.mean(dim=1).flatten(), subject_to_video.mean(dim=1).flatten()])
    keep = max(1, math.ceil(top_fraction * values.numel()))
    return torch.topk(values, keep).values.mean()


def differentiable_logsumexp(
    q: torch.Tensor, k: torch.Tensor, scale: float, chunk_size: int = 128, fused: bool | None = None
) -> torch.Tensor:
    """``logsumexp(q k^T * scale, dim=-1)`` with a gradient, without an N x N map.

    ``fused=True`` runs forward and backward through the CPU flash-attention kernel
    (:class:`FusedLogSumExp`); ``False`` uses ``chunked_logsumexp``, which holds one score block of at
    most ``chunk_size`` query rows (and ``attnkit.kernel.BLOCK_ELEMENTS`` scores) at a time, forward and
    backward. ``None`` picks the fused kernel where it exists.
    """
    if fused is None:
        fused = q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64, torch.bfloat16)
    if fused:
        return FusedLogSumExp.apply(q, k, scale)
    return chunked_logsumexp(q, k, scale=scale, chunk_size=chunk_size)


def _flash(query, key, value, scale, bias=None):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, attn_mask=bias, scale=scale
    )


class FusedLogSumExp(torch.autograd.Function):
    """Each query's log-sum-exp over the keys, forward and backward in fused flash-attention passes.

    Forward runs attention with the keys as values: it returns the log-sum-exp and
    ``out_i = sum_j p_ij k_j``, which is exactly ``d lse_i / d q_i / scale``. The key gradient
    ``scale * sum_i g_i p_ij q_i`` is a second pass with the roles swapped (keys as queries, queries as
    keys with the additive bias ``-lse_i``, values ``g_i q_i``); that pass normalises its output by
    ``Z_j = sum_i exp(s_ij - lse_i)``, which its own log-sum-exp gives back. Memory stays O(N) per head.
    """

    @staticmethod
    def forward(ctx, q, k, scale):
        out, logsumexp = _flash(q, k, k, scale)
        logsumexp = logsumexp.to(q.dtype)
        ctx.save_for_backward(q, k, out, logsumexp)
        ctx.scale = scale
        return logsumexp

    @staticmethod
    def backward(ctx, grad_logsumexp):
        q, k, out, logsumexp = ctx.saved_tensors
        scale, grad = ctx.scale, grad_logsumexp.to(q.dtype).unsqueeze(-1)
        grad_q = grad * out * scale
        # (B, heads, 1, queries): one bias per column, broadcast over rows. The kernel's log-sum-exp is a
        # transposed buffer; given a mask whose last dimension is strided, the flash kernel copies the whole
        # broadcast (B, heads, keys, queries) mask, so the bias is made contiguous first (O(N) per head).
        bias = (-logsumexp).contiguous().unsqueeze(-2)
        normalised, column_logsumexp = _flash(k, q, grad * q, scale, bias)
        grad_k = normalised * torch.exp(column_logsumexp.to(q.dtype)).unsqueeze(-1) * scale
        return grad_q, grad_k, None
