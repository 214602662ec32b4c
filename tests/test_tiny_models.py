"""The tiny offline model factory: tokenizer contract and runnable random CogVideoX pipelines."""

import pytest
import torch
from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline
from transformers import AutoTokenizer

from attnkit.testing import (
    TINY_CALL_KWARGS,
    build_word_tokenizer,
    tiny_cogvideox_pipeline,
    tiny_cogvideox_transformer,
    tiny_image,
    word_token_indices,
)

PROMPT = "a red dog runs left"

VARIANTS = [
    pytest.param("t2v", "1.0", True, id="t2v-1.0-rope"),
    pytest.param("t2v", "1.0", False, id="t2v-1.0-sincos"),
    pytest.param("i2v", "1.0", True, id="i2v-1.0-rope"),
    pytest.param("i2v", "1.0", False, id="i2v-1.0-sincos"),
    pytest.param("t2v", "1.5", True, id="t2v-1.5"),
    pytest.param("i2v", "1.5", True, id="i2v-1.5"),
]


def run_pipeline(pipe, seed=0, **overrides):
    kwargs = {**TINY_CALL_KWARGS, **overrides}
    if isinstance(pipe, CogVideoXImageToVideoPipeline):
        kwargs["image"] = tiny_image(seed)
    return pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(seed), **kwargs).frames


def encode(tokenizer, prompt, max_length=8):
    return tokenizer(
        prompt,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )


def test_tokenizer_pads_to_max_length_and_appends_eos():
    tokenizer = build_word_tokenizer(["a", "red", "dog"], model_max_length=8)
    ids = encode(tokenizer, "A red dog")["input_ids"]
    assert ids.shape == (1, 8)
    assert ids[0].tolist() == [3, 4, 5, 1, 0, 0, 0, 0]


def test_tokenizer_truncates_and_keeps_eos():
    tokenizer = build_word_tokenizer(["a", "red", "dog"], model_max_length=4)
    ids = encode(tokenizer, "a red dog a red dog", max_length=4)["input_ids"]
    assert ids[0].tolist() == [3, 4, 5, 1]


def test_tokenizer_splits_punctuation_and_maps_unknown_words_to_unk():
    tokenizer = build_word_tokenizer(["a", "dog", ","], model_max_length=8)
    tokens = tokenizer.convert_ids_to_tokens(encode(tokenizer, "a dog, zebra")["input_ids"][0])
    assert tokens[:5] == ["a", "dog", ",", "<unk>", "</s>"]


def test_tokenizer_round_trips_through_save_pretrained(tmp_path):
    tokenizer = build_word_tokenizer(model_max_length=16)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.model_max_length == 16
    assert torch.equal(encode(loaded, PROMPT, 16)["input_ids"], encode(tokenizer, PROMPT, 16)["input_ids"])


def test_word_token_indices_finds_every_occurrence():
    tokenizer = build_word_tokenizer(model_max_length=16)
    assert word_token_indices(tokenizer, "a red dog runs", "dog") == [2]
    assert word_token_indices(tokenizer, "a dog and a dog", "Dog") == [1, 4]


def test_word_token_indices_covers_every_token_of_a_multi_token_phrase():
    tokenizer = build_word_tokenizer(model_max_length=16)
    assert word_token_indices(tokenizer, "a red dog runs", "red dog") == [1, 2]


def test_word_token_indices_names_the_missing_word_and_the_prompt_tokens():
    tokenizer = build_word_tokenizer(model_max_length=16)
    with pytest.raises(ValueError, match=r"'cat' is not in prompt 'a red dog runs'.*'dog'"):
        word_token_indices(tokenizer, "a red dog runs", "cat")


def test_word_token_indices_rejects_words_outside_the_vocabulary():
    tokenizer = build_word_tokenizer(model_max_length=16)
    with pytest.raises(ValueError, match=r"'zebra'.*does not know it"):
        word_token_indices(tokenizer, "a zebra runs", "zebra")


def test_word_token_indices_ignores_tokens_past_max_length():
    tokenizer = build_word_tokenizer(model_max_length=16)
    with pytest.raises(ValueError, match="within its first 3 tokens"):
        word_token_indices(tokenizer, "a red dog runs", "runs", max_length=3)


@pytest.mark.parametrize("variant, version, rotary", VARIANTS)
def test_pipeline_variant_runs_two_steps_and_returns_a_video(variant, version, rotary):
    pipe = tiny_cogvideox_pipeline(variant, version, rotary=rotary)
    expected_class = CogVideoXImageToVideoPipeline if variant == "i2v" else CogVideoXPipeline
    assert type(pipe) is expected_class
    config = pipe.transformer.config
    assert config.use_rotary_positional_embeddings is rotary
    assert config.in_channels == config.out_channels * (2 if variant == "i2v" else 1)
    assert (config.patch_size_t is not None) is (version == "1.5")
    assert (config.ofs_embed_dim is not None) is (version == "1.5" and variant == "i2v")

    frames = run_pipeline(pipe)

    assert frames.shape == (1, 9, 3, 32, 32)
    assert torch.isfinite(frames).all()


@pytest.mark.parametrize(
    "version, expected_video_tokens",
    [pytest.param("1.0", 3 * 4 * 4, id="1.0"), pytest.param("1.5", 2 * 4 * 4, id="1.5")],
)
def test_default_call_gives_the_documented_token_grid(version, expected_video_tokens):
    pipe = tiny_cogvideox_pipeline("t2v", version)
    seen = []
    pipe.transformer.transformer_blocks[0].register_forward_hook(
        lambda module, args, kwargs, output: seen.append((output[0].shape, output[1].shape)), with_kwargs=True
    )
    run_pipeline(pipe, num_inference_steps=1)
    video_shape, text_shape = seen[0]
    assert video_shape == (2, expected_video_tokens, 32)  # CFG batches uncond and cond rows
    assert text_shape == (2, TINY_CALL_KWARGS["max_sequence_length"], 32)


def test_same_seed_gives_identical_weights_and_video():
    first, second = tiny_cogvideox_pipeline(seed=3), tiny_cogvideox_pipeline(seed=3)
    for (name, a), (_, b) in zip(first.transformer.state_dict().items(), second.transformer.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(run_pipeline(first, seed=5), run_pipeline(second, seed=5))


def test_different_seeds_give_different_weights():
    a = tiny_cogvideox_transformer(seed=0).proj_out.weight
    b = tiny_cogvideox_transformer(seed=1).proj_out.weight
    assert not torch.equal(a, b)


def test_rotary_needs_head_dim_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny_cogvideox_transformer(attention_head_dim=8)


@pytest.mark.parametrize(
    "variant, version",
    [pytest.param("t2v", "1.0", id="t2v-1.0"), pytest.param("i2v", "1.0", id="i2v-1.0"), pytest.param("t2v", "1.5", id="t2v-1.5")],
)
def test_saved_pipeline_loads_and_reproduces_the_video_exactly(tmp_path, variant, version):
    pipe = tiny_cogvideox_pipeline(variant, version)
    pipe.save_pretrained(tmp_path)
    pipeline_class = CogVideoXImageToVideoPipeline if variant == "i2v" else CogVideoXPipeline
    loaded = pipeline_class.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(run_pipeline(loaded), run_pipeline(pipe))


def test_saved_i2v_1_5_pipeline_reproduces_the_video_up_to_float_rounding(tmp_path):
    # Weights round-trip bit-exactly, but the one-row ofs-embedding matmul on the loaded (memory-mapped)
    # weights may take another BLAS path and differ in the last bits.
    pipe = tiny_cogvideox_pipeline("i2v", "1.5")
    pipe.save_pretrained(tmp_path)
    loaded = CogVideoXImageToVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    for name, tensor in pipe.transformer.state_dict().items():
        assert torch.equal(tensor, loaded.transformer.state_dict()[name]), name
    torch.testing.assert_close(run_pipeline(loaded), run_pipeline(pipe), rtol=0, atol=1e-5)
