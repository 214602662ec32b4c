"""Adapter for Wan transformers (Wan 2.1 / 2.2 text-to-video, image-to-video, first-last-frame).

Wan has no joint attention. Each block ``blocks.N`` runs

- ``attn1``: video self-attention with RoPE on q and k -> a ``"self"`` call (video tokens only);
- ``attn2``: cross-attention from video queries to the text -> a ``"cross"`` call. In image-to-video
  the CLIP image tokens come first in ``encoder_hidden_states`` and get their own key/value
  projections (``add_k_proj``/``add_v_proj``) and their own softmax, whose output is added to the
  text attention's. The call's keys are ``[image, text]`` with ``separately_normalised=("image",)``;
  extra K/V join the text softmax.

No attention mask is used (padded text tokens are zero embeddings, attended to like the others).
The pipelines run guidance as a second forward per step (cond first, then uncond). Wan 2.2's
per-token timesteps (``expand_timesteps``) count as the largest one. This module is a built-in attnkit
plugin.
"""

from __future__ import annotations

from typing import Any

import torch

from ..adapter import Adapter, InstrumentedProcessor
from ..call import AttentionCall
from ..kernel import sdpa, sdpa_with_logsumexp
from ..layout import TokenLayout
from ..plugins import hookimpl

# diffusers' WanAttnProcessor splits encoder_hidden_states at len - 512 to find the image tokens.
WAN_TEXT_CONTEXT_LENGTH = 512

# Wan-family transformers whose attention or token stream differs from WanTransformer3DModel's.
UNSUPPORTED_VARIANTS = {
    "WanVACETransformer3DModel": "Wan VACE (control hints are added to the video stream between blocks)",
    "WanAnimateTransformer3DModel": "Wan Animate (face and pose adapters inject extra attention)",
    "WanAnimate2Transformer3DModel": "Wan Animate 2 (face and pose adapters inject extra attention)",
    "ChronoEditTransformer3DModel": "ChronoEdit (temporal reasoning tokens change the video stream)",
    "SkyReelsV2Transformer3DModel": "SkyReels V2 (diffusion forcing with per-frame timesteps)",
}


class WanAdapter(Adapter):
    name = "wan"
    model_classes = ("WanTransformer3DModel",)
    # Image-to-video rows reuse the last row's image tokens.
    per_row_inputs = ("encoder_hidden_states_image", "timestep")
    unsupported_variants = UNSUPPORTED_VARIANTS
    supported_description = "Wan 2.1/2.2 text-to-video, image-to-video, first-last-frame"
    roles = frozenset({"self", "cross"})
    # Wan 2.2 A14B pipelines switch to transformer_2 for the low-noise steps; both are instrumented.
    pipeline_transformers = ("transformer", "transformer_2")

    @classmethod
    def supports(cls, model: torch.nn.Module) -> bool:
        # Known variants are claimed too, so that attaching one names it instead of a generic refusal.
        name = type(model).__name__
        return (name in cls.model_classes and hasattr(model, "blocks")) or cls.is_unsupported_variant(model)

    def install(self, session) -> int:
        from diffusers.models.transformers.transformer_wan import WanAttnProcessor

        layer = 0
        for index, block in enumerate(self.model.blocks):
            for role, attention in (("self", block.attn1), ("cross", block.attn2)):
                name = f"blocks.{index}.{'attn1' if role == 'self' else 'attn2'}"
                self.require_stock_processor(attention, WanAttnProcessor, name)
                processor_class = WanSelfProcessor if role == "self" else WanCrossProcessor
                self.replace_processor(attention, processor_class(session, self, attention.processor, layer, name))
                layer += 1
        return self.num_instrumented

    def begin_forward(self, inputs: dict[str, Any]) -> None:
        _, _, frames, height, width = inputs["hidden_states"].shape
        patch_t, patch_h, patch_w = self.model.config.patch_size
        self.grid = (frames // patch_t, height // patch_h, width // patch_w)

    @staticmethod
    def timestep(inputs: dict[str, Any]) -> float | None:
        # Wan 2.2 passes one timestep per token, 0 on the clean first frame in image-to-video.
        timestep = inputs.get("timestep")
        if isinstance(timestep, torch.Tensor):
            return float(timestep.max().item())
        return None if timestep is None else float(timestep)

    def forward_branches(self, pipeline, batch_size: int, forward_in_step: int) -> dict[str, list[int]]:
        # WanPipeline / WanImageToVideoPipeline: the prompt's forward, then the negative prompt's.
        return {("cond", "uncond")[min(forward_in_step, 1)]: list(range(batch_size))}


class _WanProcessor(InstrumentedProcessor):
    """Shared by the self- and cross-attention stand-ins for ``WanAttnProcessor``."""

    @staticmethod
    def _project_out(attn, call: AttentionCall, output: torch.Tensor) -> torch.Tensor:
        # diffusers: the dispatcher returns (B, N, heads, head_dim); flatten heads, then the output projection.
        output = output.permute(0, 2, 1, 3).flatten(2, 3).type_as(call.q)
        output = attn.to_out[0](output)
        return attn.to_out[1](output)


class WanSelfProcessor(_WanProcessor):
    """Stands in for ``WanAttnProcessor`` in ``attn1`` (video self-attention), same operations, same order."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        session = self.session
        if not session.hooks_attention or encoder_hidden_states is not None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

        def project(states: torch.Tensor):
            return _project_self(attn, states, rotary_emb)

        layout = TokenLayout(text=None, video=slice(0, hidden_states.shape[1]), grid=self.adapter.grid, role="self")
        call = self.attention_call(layout, hidden_states, project, attention_mask)
        return self._project_out(attn, call, session.run_attention(call))


class WanCrossProcessor(_WanProcessor):
    """Stands in for ``WanAttnProcessor`` in ``attn2`` (video -> [image,] text), same operations, same order."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        session = self.session
        if not session.hooks_attention or encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

        image_length = encoder_hidden_states.shape[1] - WAN_TEXT_CONTEXT_LENGTH if attn.add_k_proj is not None else 0
        text_length = encoder_hidden_states.shape[1] - image_length
        context = encoder_hidden_states

        def project(states: torch.Tensor):
            return _project_cross(attn, states, context, image_length, rotary_emb)

        layout = TokenLayout(
            text=slice(image_length, image_length + text_length),
            video=slice(0, hidden_states.shape[1]),
            grid=self.adapter.grid,
            image=slice(0, image_length) if image_length else None,
            role="cross",
            separately_normalised=("image",) if image_length else (),
        )
        call = self.attention_call(layout, hidden_states, project, attention_mask)
        session.compute_qkv(call)

        text_keys, text_values = call.k[:, :, image_length:], call.v[:, :, image_length:]
        output = session.run_kernel(call, text_keys, text_values)
        if image_length:
            image_keys, image_values = call.k[:, :, :image_length], call.v[:, :, :image_length]
            if session.wants_logsumexp:
                image_output, image_logsumexp = sdpa_with_logsumexp(call.q, image_keys, image_values)
                call._group_logsumexps["image"] = image_logsumexp
            else:
                image_output = sdpa(call.q, image_keys, image_values)
            # diffusers adds the image attention to the text attention's (text + image, in that order).
            output = output + image_output
        call.output = output
        output = session.run_attention_output(call, output)
        return self._project_out(attn, call, output)


def _apply_rotary(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on interleaved pairs, in the operation order of diffusers' WanAttnProcessor."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


def _as_call_layout(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(B, N, heads, d) -> (B, heads, N, d) views: the very tensors diffusers' native dispatch hands to SDPA."""
    return tuple(tensor.permute(0, 2, 1, 3) for tensor in tensors)


def _project_self(attn, states: torch.Tensor, rotary_emb):
    from diffusers.models.transformers.transformer_wan import _get_qkv_projections

    query, key, value = _get_qkv_projections(attn, states, None)
    query, key = attn.norm_q(query), attn.norm_k(key)
    query, key, value = (tensor.unflatten(2, (attn.heads, -1)) for tensor in (query, key, value))
    if rotary_emb is not None:
        query, key = _apply_rotary(query, *rotary_emb), _apply_rotary(key, *rotary_emb)
    return _as_call_layout(query, key, value)


def _project_cross(attn, states: torch.Tensor, context: torch.Tensor, image_length: int, rotary_emb):
    """q from the video stream; k, v of ``[image, text]`` (image through the added projections)."""
    from diffusers.models.transformers.transformer_wan import _get_added_kv_projections, _get_qkv_projections

    image, text = context[:, :image_length], context[:, image_length:]
    query, key, value = _get_qkv_projections(attn, states, text)
    query, key = attn.norm_q(query), attn.norm_k(key)
    query, key, value = (tensor.unflatten(2, (attn.heads, -1)) for tensor in (query, key, value))
    if rotary_emb is not None:
        query, key = _apply_rotary(query, *rotary_emb), _apply_rotary(key, *rotary_emb)
    if image_length:
        image_key, image_value = _get_added_kv_projections(attn, image)
        image_key = attn.norm_added_k(image_key)
        image_key, image_value = (tensor.unflatten(2, (attn.heads, -1)) for tensor in (image_key, image_value))
        key, value = torch.cat([image_key, key], dim=1), torch.cat([image_value, value], dim=1)
    return _as_call_layout(query, key, value)


@hookimpl(trylast=True)
def attnkit_register_adapters(register):
    register(WanAdapter)
