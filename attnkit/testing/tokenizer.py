"""The word-level tokenizer of the tiny test pipelines: :mod:`attnkit.word_tokenizer` over a test vocabulary.

``build_word_tokenizer()`` knows the words the tests, examples and docs use in their prompts ("a red dog
runs left"); pass ``words`` for another vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerFast

from attnkit.tokens import word_token_indices  # noqa: F401  (re-exported: tests and docs import it here)
from attnkit.word_tokenizer import word_level_tokenizer

# Enough words for the prompts the tests, examples and docs use; callers may pass their own.
DEFAULT_WORDS: tuple[str, ...] = tuple(
    """
    a an the of and with on in to from at by is are its it this that
    dog cat horse bird car boat train person man woman child ball cube square circle triangle
    star disc box shape object animal monkey robot
    red green blue yellow orange purple white black gray pink brown small big large tiny
    runs walks jumps moves flies swims rolls spins bounces slides drives dances turns falls rises
    running walking jumping moving flying swimming rolling spinning bouncing sliding driving dancing
    left right up down forward backward across around toward away fast slowly quickly slow
    field street road beach sky water grass room background scene video frame
    , . ! ? ; : - '
    """.split()
)


def build_word_tokenizer(
    words: Iterable[str] | None = None, model_max_length: int = 16
) -> PreTrainedTokenizerFast:
    """:func:`attnkit.word_tokenizer.word_level_tokenizer` over ``words`` (default: :data:`DEFAULT_WORDS`)."""
    return word_level_tokenizer(DEFAULT_WORDS if words is None else words, model_max_length)
