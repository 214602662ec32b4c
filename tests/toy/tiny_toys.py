"""Tiny toy-model configs shared by the toy tests: 16 x 16 px, one layer, trained or run in seconds."""

from dataclasses import replace

from attnkit_lmp.toy.model import ToyModelConfig

TINY_MODEL = ToyModelConfig(
    height=16, width=16, num_frames=4, object_size=6, patch_size=4, num_layers=1, num_attention_heads=1,
    attention_head_dim=16, time_embed_dim=16, text_length=14, text_dim=8, text_layers=1, text_heads=2,
    distractor_size=3,
)  # fmt: skip
TINY_I2V = replace(TINY_MODEL, architecture="cogvideox-i2v")
TINY_WAN = replace(TINY_MODEL, architecture="wan", num_frames=5)  # Wan's VAE wants 4k + 1 frames
