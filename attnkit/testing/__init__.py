"""Offline test helpers: tiny random CogVideoX pipelines and a word-level tokenizer built in code."""

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
    tiny_image,
    tiny_t5_encoder,
)
from attnkit.testing.tokenizer import DEFAULT_WORDS, build_word_tokenizer, word_token_indices

__all__ = [
    "DEFAULT_WORDS",
    "TINY_CALL_KWARGS",
    "TINY_HEIGHT",
    "TINY_NUM_FRAMES",
    "TINY_TEXT_LEN",
    "TINY_WIDTH",
    "build_word_tokenizer",
    "tiny_cogvideox_pipeline",
    "tiny_cogvideox_scheduler",
    "tiny_cogvideox_transformer",
    "tiny_cogvideox_vae",
    "tiny_image",
    "tiny_t5_encoder",
    "word_token_indices",
]
