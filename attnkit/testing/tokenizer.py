"""A word-level tokenizer built in code, so tests and the toy world need no downloaded vocabulary.

It behaves like the T5 tokenizer that CogVideoX pipelines call: lower-cases, splits on whitespace
and punctuation, appends ``</s>`` and pads with ``<pad>`` (id 0), ``</s>`` is id 1, ``<unk>`` id 2.
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


def word_token_indices(tokenizer, prompt: str, word: str, max_length: int | None = None) -> list[int]:
    """Positions in ``prompt``'s token sequence (as the text encoder sees it) covered by ``word``.

    Works for any Hugging Face tokenizer: ``word`` is tokenized on its own and every occurrence of
    that token run in the tokenized prompt is returned, e.g. ``[2]`` for ``"dog"`` in
    ``"a red dog runs"`` with the word tokenizer. Positions past ``max_length`` (the text length
    the pipeline truncates to) do not count. Raises ``ValueError`` naming the word and listing the
    prompt's tokens when the word is not there.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if max_length is not None:
        prompt_ids = prompt_ids[:max_length]
    prompt_tokens = tokenizer.convert_ids_to_tokens(prompt_ids)

    word_ids = tokenizer(word.strip(), add_special_tokens=False)["input_ids"]
    unk_id = tokenizer.unk_token_id
    if not word_ids or (unk_id is not None and unk_id in word_ids):
        raise ValueError(
            f"word {word!r} cannot be located in prompt {prompt!r}: the tokenizer does not know it "
            f"(it tokenizes to {tokenizer.convert_ids_to_tokens(word_ids)}); the prompt's tokens are "
            f"{prompt_tokens}. Choose a word that appears among them."
        )

    span = len(word_ids)
    positions: list[int] = []
    for start in range(len(prompt_ids) - span + 1):
        if prompt_ids[start : start + span] == word_ids:
            positions.extend(range(start, start + span))
    if not positions:
        where = f" within its first {max_length} tokens" if max_length is not None else ""
        raise ValueError(
            f"word {word!r} is not in prompt {prompt!r}{where}; the prompt's tokens are "
            f"{prompt_tokens}. Choose a word that appears among them."
        )
    return positions
