"""Adapter for CogVideoX transformers (1.0 and 1.5, text-to-video and image-to-video).

CogVideoX runs joint attention over ``[text, video]``: each block's ``attn1`` receives the normalised text
and video streams, concatenates them, projects q/k/v, applies per-head norms, RoPE on the video tokens
only (1.0 with rotary embeddings, 1.5), and splits the output back. Image-to-video puts the image in
the latent channels, so there is no image span. This module is a built-in attnkit plugin.
"""

from __future__ import annotations

from typing import Any

import torch

from ..adapter import Adapter, InstrumentedProcessor
from ..errors import UnsupportedModelError
from ..layout import TokenLayout
from ..plugins import hookimpl


class CogVideoXAdapter(Adapter):
    name = "cogvideox"
    model_classes = ("CogVideoXTransformer3DModel",)
    per_row_inputs = ("timestep", "timestep_cond")
    roles = frozenset({"joint"})

    def __init__(self, model: torch.nn.Module):
        super().__init__(model)

    @classmethod
    def supports(cls, model: torch.nn.Module) -> bool:
        return type(model).__name__ in cls.model_classes and hasattr(model, "transformer_blocks")

    def install(self, session) -> int:
        from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0

        for layer, block in enumerate(self.model.transformer_blocks):
            attention = block.attn1
            if type(attention.processor) is not CogVideoXAttnProcessor2_0:
                self.uninstall()
                raise UnsupportedModelError(
                    f"transformer_blocks.{layer}.attn1 uses {type(attention.processor).__name__}; attnkit "
                    "reproduces CogVideoXAttnProcessor2_0 only (call unfuse_qkv_projections() or "
                    "set_attn_processor(CogVideoXAttnProcessor2_0()) first)"
                )
            name = f"transformer_blocks.{layer}.attn1"
            self.replace_processor(attention, CogVideoXProcessor(session, self, attention.processor, layer, name))
        return self.num_instrumented

    def guidance_on(self, pipeline) -> bool:
        # CogVideoX pipelines keep the flag local to __call__ but expose the scale it derives from.
        scale = getattr(pipeline, "guidance_scale", None)
        return scale is not None and scale > 1.0

    def begin_forward(self, inputs: dict[str, Any]) -> None:
        _, frames, _, height, width = inputs["hidden_states"].shape
        patch = self.model.config.patch_size
        patch_t = self.model.config.patch_size_t or 1
        self.grid = ((frames + patch_t - 1) // patch_t, height // patch, width // patch)


class CogVideoXProcessor(InstrumentedProcessor):
    """Stands in for ``CogVideoXAttnProcessor2_0`` with the same operations in the same order, including an
    attention mask passed through the transformer's ``attention_kwargs``.

    With no per-attention hook implemented it hands the call to the original processor untouched.
    """

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ):
        session = self.session
        if not session.hooks_attention:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)

        text_length = encoder_hidden_states.size(1)
        joint = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch_size, sequence_length, _ = joint.shape
        # The stock transformer passes no mask; one given through attention_kwargs is shaped as diffusers
        # shapes it and carried by the call, so the kernel and the probes apply it.
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        def project(states: torch.Tensor):
            return _project_qkv(attn, states, text_length, image_rotary_emb)

        layout = TokenLayout(text=slice(0, text_length), video=slice(text_length, sequence_length), grid=self.adapter.grid)
        call = self.attention_call(layout, joint, project, attention_mask)
        output = session.run_attention(call)

        heads, head_dim = output.shape[1], output.shape[3]
        output = output.transpose(1, 2).reshape(batch_size, -1, heads * head_dim)
        output = attn.to_out[0](output)
        output = attn.to_out[1](output)
        encoder_hidden_states, hidden_states = output.split([text_length, output.size(1) - text_length], dim=1)
        return hidden_states, encoder_hidden_states


def _project_qkv(attn, states: torch.Tensor, text_length: int, image_rotary_emb):
    """q, k, v of CogVideoX attention, exactly as diffusers computes them (norms, then RoPE on video)."""
    batch_size = states.shape[0]
    query = attn.to_q(states)
    key = attn.to_k(states)
    value = attn.to_v(states)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    if image_rotary_emb is not None:
        from diffusers.models.embeddings import apply_rotary_emb

        query[:, :, text_length:] = apply_rotary_emb(query[:, :, text_length:], image_rotary_emb)
        if not attn.is_cross_attention:
            key[:, :, text_length:] = apply_rotary_emb(key[:, :, text_length:], image_rotary_emb)
    return query, key, value


@hookimpl(trylast=True)
def attnkit_register_adapters(register):
    register(CogVideoXAdapter)
