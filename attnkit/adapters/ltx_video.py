"""Adapter for LTX-Video transformers (``LTXVideoTransformer3DModel``: text-to-video and image-to-video).

LTX-Video has no joint attention. Each block ``transformer_blocks.N`` runs

- ``attn1``: video self-attention with RoPE on q and k (applied across heads, before the head split)
  -> a ``"self"`` call (video tokens only);
- ``attn2``: cross-attention from video queries to the text -> a ``"cross"`` call. The transformer turns
  the text mask into an additive bias (-10000 on padding), which the call carries
  (``call.attention_mask``) so probes honour it.

The transformer takes its latents packed into one token sequence; the latent grid comes from the
forward's ``num_frames``/``height``/``width``. The pipelines batch guidance in one forward (uncond rows
first), the diffusers default. Image-to-video passes one timestep per token (0 on the clean first
frame), which counts as the largest one. This module is a built-in attnkit plugin.
"""

from __future__ import annotations

from typing import Any

import torch

from ..adapter import Adapter, InstrumentedProcessor
from ..errors import UnsupportedModelError
from ..layout import TokenLayout
from ..plugins import hookimpl

# LTX-family transformers whose attention or token stream differs from LTXVideoTransformer3DModel's.
UNSUPPORTED_VARIANTS = {
    "LTX2VideoTransformer3DModel": "LTX-2 (joint audio and video streams with their own attention)",
}


class LTXVideoAdapter(Adapter):
    name = "ltx_video"
    model_classes = ("LTXVideoTransformer3DModel",)
    per_row_inputs = ("timestep", "encoder_attention_mask")
    unsupported_variants = UNSUPPORTED_VARIANTS
    supported_description = "LTX-Video text-to-video and image-to-video"
    roles = frozenset({"self", "cross"})

    @classmethod
    def supports(cls, model: torch.nn.Module) -> bool:
        # Known variants are claimed too, so that attaching one names it instead of a generic refusal.
        name = type(model).__name__
        has_blocks = hasattr(model, "transformer_blocks")
        return (name in cls.model_classes and has_blocks) or cls.is_unsupported_variant(model)

    def install(self, session) -> int:
        from diffusers.models.transformers.transformer_ltx import LTXVideoAttnProcessor

        layer = 0
        for index, block in enumerate(self.model.transformer_blocks):
            for role, attention in (("self", block.attn1), ("cross", block.attn2)):
                name = f"transformer_blocks.{index}.{'attn1' if role == 'self' else 'attn2'}"
                self.require_stock_processor(attention, LTXVideoAttnProcessor, name)
                processor = LTXVideoProcessor(session, self, attention.processor, layer, name, role)
                self.replace_processor(attention, processor)
                layer += 1
        return self.num_instrumented

    def begin_forward(self, inputs: dict[str, Any]) -> None:
        config = self.model.config
        frames, height, width = (inputs.get(key) for key in ("num_frames", "height", "width"))
        tokens = inputs["hidden_states"].shape[1]
        if None in (frames, height, width):
            raise UnsupportedModelError(
                f"{type(self.model).__name__} was called without num_frames/height/width; attnkit reads the latent "
                "grid from them (LTXPipeline and LTXImageToVideoPipeline pass them)"
            )
        grid = (frames // config.patch_size_t, height // config.patch_size, width // config.patch_size)
        if grid[0] * grid[1] * grid[2] != tokens:
            raise UnsupportedModelError(
                f"{type(self.model).__name__} got {tokens} video tokens but its latent grid {grid} has "
                f"{grid[0] * grid[1] * grid[2]}; the tokens do not form one latent grid (conditioning tokens "
                "appended, as LTXConditionPipeline does?), which attnkit does not support"
            )
        self.grid = grid

    @staticmethod
    def timestep(inputs: dict[str, Any]) -> float | None:
        # Image-to-video passes one timestep per token, 0 on the clean first frame.
        timestep = inputs.get("timestep")
        if isinstance(timestep, torch.Tensor):
            return float(timestep.max().item())
        return None if timestep is None else float(timestep)

    def default_row_input(self, key: str, value: torch.Tensor, added: int) -> torch.Tensor:
        # Added text counts as unpadded unless its own mask is given: a copied mask would hide or expose
        # tokens of a different prompt.
        if key == "encoder_attention_mask":
            return value.new_ones(added, *value.shape[1:])
        return super().default_row_input(key, value, added)


class LTXVideoProcessor(InstrumentedProcessor):
    """Stands in for ``LTXVideoAttnProcessor`` in ``attn1`` and ``attn2``, same operations, same order.

    With no per-attention hook implemented it hands the call to the original processor untouched.
    """

    def __init__(self, session, adapter: Adapter, original, layer: int, name: str, role: str):
        super().__init__(session, adapter, original, layer, name)
        self.role = role

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        session = self.session
        if not session.hooks_attention or (encoder_hidden_states is None) != (self.role == "self"):
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)

        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, key_length, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        def project(states: torch.Tensor):
            # Self-attention projects keys from the (maybe edited) states; cross-attention from the text.
            return _project(attn, states, states if self.role == "self" else context, image_rotary_emb)

        video = slice(0, hidden_states.shape[1])
        if self.role == "self":
            layout = TokenLayout(text=None, video=video, grid=self.adapter.grid, role="self")
        else:
            layout = TokenLayout(text=slice(0, key_length), video=video, grid=self.adapter.grid, role="cross")
        call = self.attention_call(layout, hidden_states, project, attention_mask)
        output = session.run_attention(call)
        # diffusers: the dispatcher returns (B, N, heads, head_dim); flatten heads, then the output projection.
        output = output.permute(0, 2, 1, 3).flatten(2, 3).to(call.q.dtype)
        output = attn.to_out[0](output)
        return attn.to_out[1](output)


def _project(attn, states: torch.Tensor, context: torch.Tensor, image_rotary_emb):
    """q, k, v of LTX-Video attention as diffusers computes them: norms and RoPE across heads, then the split."""
    from diffusers.models.transformers.transformer_ltx import apply_rotary_emb

    query, key, value = attn.to_q(states), attn.to_k(context), attn.to_v(context)
    query, key = attn.norm_q(query), attn.norm_k(key)
    if image_rotary_emb is not None:
        query, key = apply_rotary_emb(query, image_rotary_emb), apply_rotary_emb(key, image_rotary_emb)
    # (B, N, heads, d) -> (B, heads, N, d) views: the very tensors diffusers' native dispatch hands to SDPA.
    return tuple(tensor.unflatten(2, (attn.heads, -1)).permute(0, 2, 1, 3) for tensor in (query, key, value))


@hookimpl(trylast=True)
def attnkit_register_adapters(register):
    register(LTXVideoAdapter)
