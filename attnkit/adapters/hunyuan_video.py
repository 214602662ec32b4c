"""Adapter for HunyuanVideo transformers (text-to-video, and image-to-video by latent concat or token replace).

Every attention of HunyuanVideo is joint over ``[video, text]`` (video first, unlike CogVideoX):

- dual-stream blocks (``transformer_blocks.N.attn``) project video with ``to_q/k/v`` and text with
  ``add_q/k/v_proj``, normalise each, apply RoPE to the video tokens, and concatenate;
- single-stream blocks (``single_transformer_blocks.N.attn``) concatenate first and project both with
  ``to_q/k/v``, RoPE again on the video tokens only.

The transformer masks the text padding with a boolean ``[B, 1, 1, N]`` key mask, which the attention
call carries (``call.attention_mask``) so probes and extra K/V honour it. The token refiner's attention
(text only, inside the context embedder) is not instrumented. The image-to-video variants put the image
in the latents, so there is no image span. The pipeline runs true classifier-free guidance as a second
forward per step (cond first, then uncond). This module is a built-in attnkit plugin.
"""

from __future__ import annotations

from typing import Any

import torch

from ..adapter import Adapter, InstrumentedProcessor
from ..layout import TokenLayout
from ..plugins import hookimpl

_BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")

# HunyuanVideo-family transformers whose token stream or attention differs from the original model's.
UNSUPPORTED_VARIANTS = {
    "HunyuanVideoFramepackTransformer3DModel": (
        "HunyuanVideo FramePack (clean-history latents are prepended to the video tokens, so they do not form "
        "one latent grid)"
    ),
    "HunyuanVideo15Transformer3DModel": "HunyuanVideo 1.5 (a different attention processor and text streams)",
}


class HunyuanVideoAdapter(Adapter):
    name = "hunyuan_video"
    model_classes = ("HunyuanVideoTransformer3DModel",)
    per_row_inputs = ("encoder_attention_mask", "pooled_projections", "timestep", "guidance")
    unsupported_variants = UNSUPPORTED_VARIANTS
    supported_description = "text-to-video and image-to-video"
    roles = frozenset({"joint"})

    @classmethod
    def supports(cls, model: torch.nn.Module) -> bool:
        # Known variants are claimed too, so that attaching one names it instead of a generic refusal.
        name = type(model).__name__
        has_blocks = all(hasattr(model, blocks) for blocks in _BLOCK_LISTS)
        return (name in cls.model_classes and has_blocks) or cls.is_unsupported_variant(model)

    def install(self, session) -> int:
        from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoAttnProcessor2_0

        layer = 0
        for blocks in _BLOCK_LISTS:
            for index, block in enumerate(getattr(self.model, blocks)):
                attention, name = block.attn, f"{blocks}.{index}.attn"
                self.require_stock_processor(attention, HunyuanVideoAttnProcessor2_0, name)
                self.replace_processor(
                    attention, HunyuanVideoProcessor(session, self, attention.processor, layer, name)
                )
                layer += 1
        return self.num_instrumented

    def begin_forward(self, inputs: dict[str, Any]) -> None:
        _, _, frames, height, width = inputs["hidden_states"].shape
        patch, patch_t = self.model.config.patch_size, self.model.config.patch_size_t
        self.grid = (frames // patch_t, height // patch, width // patch)

    def forward_branches(self, pipeline, batch_size: int, forward_in_step: int) -> dict[str, list[int]]:
        # HunyuanVideoPipeline: the prompt's forward, then (true CFG only) the negative prompt's.
        return {("cond", "uncond")[min(forward_in_step, 1)]: list(range(batch_size))}

    def default_row_input(self, key: str, value: torch.Tensor, added: int) -> torch.Tensor:
        # Added text counts as unpadded unless its own mask is given: a copied mask would hide or expose
        # tokens of a different prompt.
        if key == "encoder_attention_mask":
            return value.new_ones(added, *value.shape[1:])
        return super().default_row_input(key, value, added)


class HunyuanVideoProcessor(InstrumentedProcessor):
    """Stands in for ``HunyuanVideoAttnProcessor2_0`` with the same operations in the same order.

    With no per-attention hook implemented it hands the call to the original processor untouched.
    """

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        session = self.session
        if not session.hooks_attention or encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)

        dual_stream = attn.add_q_proj is not None
        video_length, text_length = hidden_states.shape[1], encoder_hidden_states.shape[1]
        joint = torch.cat([hidden_states, encoder_hidden_states], dim=1)
        video_stream, text_stream = hidden_states, encoder_hidden_states

        def project(states: torch.Tensor):
            if dual_stream:
                # The unchanged sequence is projected from the original stream tensors, as diffusers does.
                video, text = (
                    (video_stream, text_stream) if states is joint else (states[:, :video_length], states[:, video_length:])
                )
                return _project_dual_stream(attn, video, text, image_rotary_emb)
            return _project_single_stream(attn, states, text_length, image_rotary_emb)

        layout = TokenLayout(
            text=slice(video_length, video_length + text_length), video=slice(0, video_length), grid=self.adapter.grid
        )
        call = self.attention_call(layout, joint, project, attention_mask)
        output = session.run_attention(call)

        # diffusers: the dispatcher returns (B, N, heads, head_dim); flatten heads, split [video, text].
        output = output.permute(0, 2, 1, 3).flatten(2, 3).to(call.q.dtype)
        video_output, text_output = output[:, :-text_length], output[:, -text_length:]
        if getattr(attn, "to_out", None) is not None:
            video_output = attn.to_out[0](video_output)
            video_output = attn.to_out[1](video_output)
        if getattr(attn, "to_add_out", None) is not None:
            text_output = attn.to_add_out(text_output)
        return video_output, text_output


def _heads_last(attn, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.unflatten(2, (attn.heads, -1))


def _as_call_layout(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(B, N, heads, d) -> (B, heads, N, d) views: the very tensors diffusers' native dispatch hands to SDPA."""
    return tuple(tensor.permute(0, 2, 1, 3) for tensor in tensors)


def _project_dual_stream(attn, video: torch.Tensor, text: torch.Tensor, image_rotary_emb):
    """q, k, v of a dual-stream block: video and text through their own projections and norms."""
    from diffusers.models.embeddings import apply_rotary_emb

    query, key, value = (_heads_last(attn, proj(video)) for proj in (attn.to_q, attn.to_k, attn.to_v))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    if image_rotary_emb is not None:
        query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
        key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
    text_query, text_key, text_value = (
        _heads_last(attn, proj(text)) for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)
    )
    if attn.norm_added_q is not None:
        text_query = attn.norm_added_q(text_query)
    if attn.norm_added_k is not None:
        text_key = attn.norm_added_k(text_key)
    return _as_call_layout(
        torch.cat([query, text_query], dim=1), torch.cat([key, text_key], dim=1), torch.cat([value, text_value], dim=1)
    )


def _project_single_stream(attn, joint: torch.Tensor, text_length: int, image_rotary_emb):
    """q, k, v of a single-stream block: one projection of [video, text], RoPE on the video tokens."""
    from diffusers.models.embeddings import apply_rotary_emb

    query, key, value = (_heads_last(attn, proj(joint)) for proj in (attn.to_q, attn.to_k, attn.to_v))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    if image_rotary_emb is not None:
        query = torch.cat(
            [apply_rotary_emb(query[:, :-text_length], image_rotary_emb, sequence_dim=1), query[:, -text_length:]],
            dim=1,
        )
        key = torch.cat(
            [apply_rotary_emb(key[:, :-text_length], image_rotary_emb, sequence_dim=1), key[:, -text_length:]],
            dim=1,
        )
    return _as_call_layout(query, key, value)


@hookimpl(trylast=True)
def attnkit_register_adapters(register):
    register(HunyuanVideoAdapter)
