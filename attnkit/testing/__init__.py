"""Offline test helpers: tiny random CogVideoX, HunyuanVideo and Wan pipelines and a word-level tokenizer built in code."""

from attnkit.testing.tiny_models import (
    TINY_CALL_KWARGS,
    TINY_HEIGHT,
    TINY_NUM_FRAMES,
    TINY_TEXT_LEN,
    TINY_WIDTH,
    tiny_cogvideox_pipeline,
    tiny_cogvideox_scheduler,
    tiny_cogvideox_transformer,
    tiny_cogvideox_vae,
    saved_tiny_cogvideox_pipeline,
    tiny_image,
    tiny_t5_encoder,
)
from attnkit.testing.tiny_hunyuan import HUNYUAN_CALL_KWARGS, tiny_hunyuan_pipeline, tiny_hunyuan_transformer
from attnkit.testing.tiny_wan import (
    WAN_CALL_KWARGS,
    WAN_I2V_CALL_KWARGS,
    tiny_wan_image,
    tiny_wan_pipeline,
    tiny_wan_transformer,
)
from attnkit.testing.tokenizer import DEFAULT_WORDS, build_word_tokenizer, word_token_indices

__all__ = [
    "DEFAULT_WORDS",
    "HUNYUAN_CALL_KWARGS",
    "TINY_CALL_KWARGS",
    "TINY_HEIGHT",
    "TINY_NUM_FRAMES",
    "TINY_TEXT_LEN",
    "TINY_WIDTH",
    "WAN_CALL_KWARGS",
    "WAN_I2V_CALL_KWARGS",
    "build_word_tokenizer",
    "saved_tiny_cogvideox_pipeline",
    "tiny_cogvideox_pipeline",
    "tiny_cogvideox_scheduler",
    "tiny_cogvideox_transformer",
    "tiny_cogvideox_vae",
    "tiny_hunyuan_pipeline",
    "tiny_hunyuan_transformer",
    "tiny_image",
    "tiny_t5_encoder",
    "tiny_wan_image",
    "tiny_wan_pipeline",
    "tiny_wan_transformer",
    "word_token_indices",
]
