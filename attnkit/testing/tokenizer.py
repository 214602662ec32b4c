"""A word-level tokenizer built in code, so tests and the toy world need no downloaded vocabulary.

It behaves like the T5 tokenizer that CogVideoX pipelines call: lower-cases, splits on whitespace
and punctuation, appends ``</s>`` and pads with ``<pad>`` (id 0), ``</s>`` is id 1, ``<unk>`` id 2.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from attnkit.tokens import word_token_indices  # noqa: F401  (re-exported: tests and docs import it here)

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)

# Enough words for the prompts the tests, examples and the toy world use; callers may pass their own.
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
    """Build a T5-like word-level tokenizer over ``words`` (lower-cased, de-duplicated, in order).

    ``tokenizer(prompt, padding="max_length", max_length=N, truncation=True,
    add_special_tokens=True, return_tensors="pt")`` returns ``N`` ids ending in ``</s>`` then
    ``<pad>``; words outside the vocabulary become ``<unk>``. ``save_pretrained`` and
    ``PreTrainedTokenizerFast.from_pretrained`` (or ``AutoTokenizer``) round-trip it.
    """
    vocab: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in DEFAULT_WORDS if words is None else words:
        word = word.lower()
        if word and word not in vocab:
            vocab[word] = len(vocab)

    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}",
        pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}",
        special_tokens=[(EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
    )
