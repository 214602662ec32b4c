"""A word-level tokenizer built in code: the tokenizer of the bundled toy models and of the tiny test pipelines.

It behaves like the T5 tokenizer that CogVideoX pipelines call: lower-cases, splits on whitespace
and punctuation, appends ``</s>`` and pads with ``<pad>`` (id 0), ``</s>`` is id 1, ``<unk>`` id 2.
A pipeline saves it like any other tokenizer, so the saved files load with ``AutoTokenizer`` and the
stock pipeline classes, without this module. Building one needs ``tokenizers`` and ``transformers``
(the ``lmp`` extra); nothing in the core imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)


def word_level_tokenizer(words: Iterable[str], model_max_length: int) -> PreTrainedTokenizerFast:
    """A T5-like word-level tokenizer over ``words`` (lower-cased, de-duplicated, in order).

    ``tokenizer(prompt, padding="max_length", max_length=N, truncation=True,
    add_special_tokens=True, return_tensors="pt")`` returns ``N`` ids ending in ``</s>`` then
    ``<pad>``; words outside the vocabulary become ``<unk>``. ``save_pretrained`` and
    ``PreTrainedTokenizerFast.from_pretrained`` (or ``AutoTokenizer``) round-trip it.
    """
    vocab: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
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
