"""Where a word sits in a prompt's token sequence, for any Hugging Face tokenizer."""

from __future__ import annotations


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
