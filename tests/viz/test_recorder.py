"""The recorder plugin: what it keeps equals the naive full softmax, and it refuses to go over budget."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.record import AttentionRecorder, MemoryBudgetError, estimate_recording_bytes

from .conftest import PROMPT, run_pipeline

TOKEN_POSITIONS = {"dog": [2], "grass": [6]}  # "a red dog runs on the grass" with the word tokenizer


def naive_map(run, step, layer, branch, positions, direction, heads=None):
    """A token's (video tokens,) map from the full N x N softmax, heads and branch rows averaged."""
    probs, layout, branches = run.full_probs(step, layer)
    probs = probs[branches[branch]]
    probs = probs[:, heads] if heads is not None else probs
    probs = probs.mean(dim=(0, 1))
    text = [layout.text.start + position for position in positions]
    text_to_video = probs[text][:, layout.video].sum(dim=0)
    video_to_text = probs[layout.video][:, text].sum(dim=1)
    return {
        "text->video": text_to_video,
        "video->text": video_to_text,
        "both": text_to_video + video_to_text,
    }[direction]


@pytest.mark.parametrize("direction", ["text->video", "video->text", "both"])
def test_recorded_maps_equal_the_full_softmax_for_every_branch_step_layer_and_token(recorded_run, direction):
    record = recorded_run.recorders[direction].record
    assert record.steps == [0, 1] and record.layers == [0, 1] and record.branches == ["uncond", "cond"]
    for branch in record.branches:
        for step in record.steps:
            for layer in record.layers:
                for token, positions in TOKEN_POSITIONS.items():
                    expected = naive_map(recorded_run, step, layer, branch, positions, direction)
                    got = record.map(token, branch=branch, step=step, layer=layer)
                    assert got.shape == record.grid == (3, 4, 4)
                    torch.testing.assert_close(got.flatten(), expected, atol=1e-5, rtol=1e-4)


def test_both_directions_is_the_sum_of_the_two(recorded_run):
    maps = {
        direction: recorded_run.recorders[direction].record.maps["cond"]
        for direction in ("text->video", "video->text", "both")
    }
    torch.testing.assert_close(maps["both"], maps["text->video"] + maps["video->text"], atol=1e-6, rtol=1e-5)


def test_a_head_list_averages_only_those_heads(recorded_run):
    record = recorded_run.recorders["head 1"].record
    expected = naive_map(recorded_run, 1, 0, "cond", [2], "both", heads=[1])
    torch.testing.assert_close(record.map("dog", step=1, layer=0).flatten(), expected, atol=1e-5, rtol=1e-4)
    all_heads = naive_map(recorded_run, 1, 0, "cond", [2], "both")
    assert not torch.allclose(expected, all_heads), "the test needs heads that differ"


def test_a_multi_token_word_covers_all_its_positions_and_sums_them(recorded_run):
    record = recorded_run.recorders["multi-token word"].record
    assert record.token_positions[0] == [1, 2]
    assert record.tokens == ["red dog", "red@1", "dog@2"]
    torch.testing.assert_close(
        record.maps["cond"][:, :, 0], record.maps["cond"][:, :, 1] + record.maps["cond"][:, :, 2]
    )


def test_reduced_layers_and_steps_keep_only_their_mean(recorded_run, record):
    reduced = recorded_run.recorders["means"].record
    assert reduced.maps["cond"].shape == (1, 1, 1, 3, 4, 4)
    assert reduced.layer_labels == ["mean of layers 0, 1"] and reduced.step_labels == ["mean of steps 0, 1"]
    torch.testing.assert_close(reduced.map("dog"), record.maps["cond"][:, :, 0].mean(dim=(0, 1)))


def test_layers_and_steps_select_what_is_kept(recorded_run, record):
    selected = recorded_run.recorders["selected"].record
    assert selected.steps == [1] and selected.layers == [1]
    assert selected.timesteps == [record.timesteps[1]]
    torch.testing.assert_close(
        selected.map("dog", step=1, layer=1), record.map("dog", branch="cond", step=1, layer=1)
    )


def test_kept_memory_is_what_the_estimate_said(recorded_run):
    recorder = recorded_run.recorders["both"]
    # 2 branches x 2 steps x 2 layers x 2 tokens x 48 video tokens x 4 bytes
    assert recorder.estimate.kept_bytes == recorder.peak_kept_bytes == 2 * 2 * 2 * 2 * 48 * 4
    assert recorded_run.recorders["means"].peak_kept_bytes == 1 * 48 * 4


def test_the_record_says_what_it_holds(record):
    assert (
        record.model_class == "CogVideoXTransformer3DModel" and record.pipeline_class == "CogVideoXPipeline"
    )
    assert record.prompt == PROMPT and record.tokens == ["dog", "grass"]
    assert record.token_positions == [[2], [6]]
    assert record.prompt_tokens[:3] == ["a", "red", "dog"]
    assert record.layout == {"text": [0, 16], "video": [16, 64]}
    assert record.layer_names == ["transformer_blocks.0.attn1", "transformer_blocks.1.attn1"]
    assert record.timesteps[0] > record.timesteps[1] and record.complete and record.num_heads == 2


class CountsQKV:
    name = "test.count-qkv"

    def __init__(self):
        self.calls = 0

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.calls += 1


def test_going_over_the_budget_is_an_error_before_any_map_is_kept(tiny_pipe):
    # Kept maps: 1 branch x 2 steps x 2 layers x 1 token x 48 video tokens x 4 bytes = 768 bytes.
    recorder = AttentionRecorder(tokens=["dog"], prompt=PROMPT, memory_budget_bytes=700)
    counter = CountsQKV()
    with pytest.raises(attnkit.PluginError) as raised:
        run_pipeline(tiny_pipe, [counter, recorder])
    error = raised.value.__cause__
    assert isinstance(error, MemoryBudgetError)
    assert (
        "768 bytes" in str(error)
        and "memory_budget_bytes=700" in str(error)
        and "reduce_layers=True" in str(error)
    )
    assert (
        counter.calls == 1
    ), "the budget must be checked at the first attention call, before the run goes on"
    assert recorder.peak_kept_bytes == 0
    assert not hasattr(tiny_pipe.transformer, "_attnkit_session")


def test_a_budget_that_fits_records(tiny_pipe):
    estimate = estimate_recording_bytes(video_tokens=48, tokens=1, layers=2, steps=1, heads=2)
    recorder = AttentionRecorder(tokens=["dog"], prompt=PROMPT, memory_budget_bytes=estimate.total_bytes)
    run_pipeline(tiny_pipe, [recorder], num_inference_steps=1, output_type="latent")
    assert recorder.peak_kept_bytes == estimate.kept_bytes == 384


def test_an_unknown_word_lists_the_prompt_tokens(tiny_pipe):
    with pytest.raises(ValueError, match=r"'cat' is not in prompt .*\['a', 'red', 'dog'"):
        AttentionRecorder(tokens=["cat"], prompt=PROMPT, tokenizer=tiny_pipe.tokenizer)


def test_words_need_the_prompt():
    with pytest.raises(ValueError, match="pass prompt="):
        AttentionRecorder(tokens=["dog"])


def test_a_layer_out_of_range_fails_when_the_session_starts(tiny_pipe):
    recorder = AttentionRecorder(tokens=[2], layers=[0, 5])
    with pytest.raises(
        attnkit.PluginError, match=r"layers=\[0, 5\] out of range: .* has 2 attention layers \(0..1\)"
    ):
        with attnkit.attach(tiny_pipe, plugins=[recorder]):
            pass
    assert not hasattr(tiny_pipe.transformer, "_attnkit_session")


def test_a_missing_branch_names_the_branches_of_the_batch(tiny_pipe):
    recorder = AttentionRecorder(tokens=[2], branches=["reference"])
    with pytest.raises(
        attnkit.PluginError,
        match=r"\['reference'\] are not in this run's batch, which has \['cond', 'uncond'\]",
    ):
        run_pipeline(tiny_pipe, [recorder], num_inference_steps=1, output_type="latent")


def test_a_word_beyond_the_encoded_text_is_an_error(tiny_pipe):
    recorder = AttentionRecorder(tokens=[20])
    with pytest.raises(attnkit.PluginError, match="the model sees only 16 text tokens"):
        run_pipeline(tiny_pipe, [recorder], num_inference_steps=1, output_type="latent")


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"tokens": []}, "tokens is empty"),
        ({"tokens": [2, 2]}, "listed more than once"),
        ({"tokens": [2], "direction": "sideways"}, "direction='sideways' is not supported"),
        ({"tokens": [2], "heads": "max"}, "heads='max' is not supported"),
        ({"tokens": [2], "steps": [-1]}, "steps=\\[-1\\] must be"),
        ({"tokens": [2], "memory_budget_bytes": 0}, "must be positive"),
    ],
)
def test_bad_arguments_say_what_to_pass(arguments, message):
    with pytest.raises(ValueError, match=message):
        AttentionRecorder(**arguments)


def test_without_a_pipeline_each_new_step_is_checked_against_the_budget(tiny_pipe):
    transformer = tiny_pipe.transformer
    # One step keeps 2 layers x 1 token x 48 video tokens x 4 bytes = 384 bytes; the probe works in
    # 3 x 1 row x 2 heads x 1 position x 48 x 4 = 1152 bytes. The budget fits one step, not two.
    recorder = AttentionRecorder(tokens=[2], memory_budget_bytes=384 + 1152)
    inputs = {
        "hidden_states": torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0)),
        "encoder_hidden_states": torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1)),
    }
    with pytest.raises(attnkit.PluginError) as raised:
        with attnkit.attach(transformer, plugins=[recorder]):
            transformer(**inputs, timestep=torch.tensor([999]))
            assert recorder.peak_kept_bytes == 384 and recorder.estimate.steps is None
            transformer(**inputs, timestep=torch.tensor([499]))
    assert isinstance(raised.value.__cause__, MemoryBudgetError)
    assert "for step 1" in str(raised.value.__cause__) and "more steps are checked as they come" in str(
        raised.value.__cause__
    )
    assert recorder.peak_kept_bytes == 384
    assert (
        recorder.record.steps == [0] and not recorder.record.complete
    ), "what was kept before the error is there"


def test_video_to_text_records_the_cross_attention_layers_of_a_wan_model():
    from attnkit.testing.tiny_wan import WAN_CALL_KWARGS, tiny_wan_pipeline

    pipe = tiny_wan_pipeline("t2v")
    recorder = AttentionRecorder(tokens=["dog"], prompt=PROMPT, direction="video->text")
    with attnkit.attach(pipe, plugins=[recorder]) as session:
        pipe(
            prompt=PROMPT,
            generator=torch.Generator().manual_seed(0),
            **dict(WAN_CALL_KWARGS, num_inference_steps=1, output_type="latent"),
        )
    record = recorder.record
    assert len(record.layers) * 2 == session.num_attention_modules, "self-attention layers are left out"
    assert all(name.endswith("attn2") for name in record.layer_names)
    assert not torch.isnan(record.maps["cond"]).any()
    # each video token's attention to "dog" is a probability
    assert 0 < float(record.maps["cond"].min()) and float(record.maps["cond"].max()) <= 1


def test_text_to_video_needs_joint_attention_and_says_so_on_a_wan_model():
    from attnkit.testing.tiny_wan import tiny_wan_pipeline

    recorder = AttentionRecorder(tokens=[2], direction="both")
    with pytest.raises(attnkit.UnsupportedRoleError, match=r"handles only \['joint'\] attention calls"):
        with attnkit.attach(tiny_wan_pipeline("t2v"), plugins=[recorder]):
            pass
