"""The toy world's Wan 2.1-architecture pipeline: the same world, sizes and training as the CogVideoX one.

Components, all stock diffusers/transformers classes so that an unmodified
``WanPipeline.from_pretrained(path)`` loads the saved result:

- ``WanTransformer3DModel``: separate video self-attention (``attn1``) and cross-attention to the text
  (``attn2``), 3D RoPE on video tokens; the toy's width, depth and patch.
- ``UMT5EncoderModel``: the tiny text encoder, trained jointly (as the CogVideoX toy's T5).
- ``AutoencoderKLWan`` with one level, no down-sampling (``scale_factor_spatial`` and
  ``scale_factor_temporal`` 1) and hand-set weights that make it the identity on [-1, 1] pixels, for the
  reason the CogVideoX toy's VAE is one: LMP is measured on the transformer, not on a tiny autoencoder.
- ``UniPCMultistepScheduler`` on flow-matching sigmas (Wan's own scheduler class and noise path,
  ``x_t = (1 - sigma) x_0 + sigma eps``) with ``prediction_type="sample"``: the transformer predicts
  the clean clip, as the CogVideoX toy does. Predicting Wan's usual velocity ``eps - x_0`` would need
  the noise itself to pass through a token of width 128 that encodes 3 x 8 x 8 = 192 pixel values,
  which a feasibility trial found this size cannot learn.

One difference a user meets: ``WanPipeline`` rounds ``num_frames`` to ``4k + 1`` for Wan's 4x temporal VAE
and, with a temporal factor of 1, always adds a frame; :func:`attnkit_lmp.toy.model.generation_kwargs`
asks for one frame fewer so the clip has the world's frame count (motion transfer passes its own initial
latents, whose frame count wins).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from attnkit_lmp.toy.model import text_encoder_settings

# Large constant channel that pins the VAE's RMS norms to a known scale (see ``build_identity_wan_vae``).
_PIN_VALUE = 1e5
# Shift that moves activations into the range where SiLU(x) == x to float32 precision.
_SILU_SHIFT = 20.0
_VAE_CHANNELS = 8
# The flow-matching shift of the sampling schedule: more of the steps at high noise, where layout and
# motion are decided (Wan 2.1 uses 3.0 at 480p).
FLOW_SHIFT = 3.0


def build_wan_text_encoder(config, vocab_size: int) -> UMT5EncoderModel:
    return UMT5EncoderModel(UMT5Config(**text_encoder_settings(config, vocab_size)))


def build_wan_transformer(config) -> WanTransformer3DModel:
    width = config.num_attention_heads * config.attention_head_dim
    return WanTransformer3DModel(
        patch_size=(1, config.patch_size, config.patch_size),
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        in_channels=3,
        out_channels=3,
        text_dim=config.text_dim,
        freq_dim=config.time_embed_dim,
        ffn_dim=4 * width,  # CogVideoX's feed-forward ratio, so both toys have the same block sizes
        num_layers=config.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=None,
        added_kv_proj_dim=None,
        rope_max_seq_len=max(config.num_frames, config.height, config.width),
    )


def build_wan_scheduler() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        prediction_type="sample",
        use_flow_sigmas=True,
        flow_shift=FLOW_SHIFT,
        solver_order=2,
    )


def build_identity_wan_vae(config) -> AutoencoderKLWan:
    """An ``AutoencoderKLWan`` whose encoder and decoder are the identity on [-1, 1] pixels (to ~1e-6).

    How the weights realise it (every block keeps its stock code path):
    - every residual block's last convolution and the attention block's projection are zero, so those
      blocks return their input;
    - the RMS norms have no bias, so the shift that puts values where SiLU is the identity comes first:
      the first convolution writes ``(r + 20, g + 20, b + 20, P)`` with ``P = 1e5``. The norm divides by
      the channel norm, which is ``P`` to a relative 1e-8 whatever the pixels, and the norm's gain
      ``P / sqrt(channels)`` gives the values back; the last convolution removes the shift;
    - the encoder's log-variance channels are -30 (sampling adds noise of std ~3e-7), and the latent
      normalisation is mean 0, std 1, so the pipeline's latent *is* the clip's pixels.
    Only the current frame's tap of each causal 3x3x3 convolution is used, so the frame-by-frame cache
    the Wan VAE keeps changes nothing.
    """
    channels = _VAE_CHANNELS
    vae = AutoencoderKLWan(
        base_dim=channels,
        z_dim=3,
        dim_mult=[1],
        num_res_blocks=1,
        attn_scales=[],
        temperal_downsample=[],
        latents_mean=[0.0, 0.0, 0.0],
        latents_std=[1.0, 1.0, 1.0],
        scale_factor_temporal=1,
        scale_factor_spatial=1,
    )
    current = (2, 1, 1)  # causal padding puts the current frame at the last temporal tap; spatial centre
    gain = _PIN_VALUE / channels**0.5
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.zero_()
        for name, parameter in vae.named_parameters():
            if name.endswith("gamma"):
                parameter.fill_(1.0)
        for part in (vae.encoder, vae.decoder):
            conv_in = part.conv_in
            for rgb in range(3):
                conv_in.weight[rgb, rgb][current] = 1.0
                conv_in.bias[rgb] = _SILU_SHIFT
            conv_in.bias[3] = _PIN_VALUE
            part.norm_out.gamma.fill_(gain)
            conv_out = part.conv_out
            for rgb in range(3):
                conv_out.weight[rgb, rgb][current] = 1.0
                conv_out.bias[rgb] = -_SILU_SHIFT
        vae.encoder.conv_out.bias[3:6] = -30.0  # log-variance
        for conv in (vae.quant_conv, vae.post_quant_conv):
            conv.weight[:, :, 0, 0, 0] = torch.eye(conv.weight.shape[0])
    return vae

