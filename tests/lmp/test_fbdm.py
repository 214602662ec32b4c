"""FBDM: the mask equals a naive full-softmax computation; refresh timing and the one-step lag."""

from __future__ import annotations

import torch

import attnkit
from attnkit_lmp.fbdm import FBDM, normalise_per_frame

from .conftest import Recorder, forward_inputs, run_forward, run_steps_with

SUBJECT = [2, 3]


def naive_fbdm_map(recorded: dict, reference_row: int, subject: list[int]) -> torch.Tensor:
    """A[i] = sum_s (W[s, i] + W[i, s]) from the full N x N softmax, head-mean, layer-mean, (frames, h, w)."""
    maps = []
    for call in recorded.values():
        layout = call["layout"]
        q, k = call["q"][reference_row].double(), call["k"][reference_row].double()
        weights = torch.softmax(q @ k.transpose(-1, -2) * call["scale"], dim=-1)  # (heads, N, N)
        tokens = [layout.text.start + s for s in subject]
        video = torch.arange(layout.video.start, layout.video.stop)
        text_to_video = weights[:, tokens][:, :, video].sum(dim=1)
        video_to_text = weights[:, video][:, :, tokens].sum(dim=2)
        maps.append((text_to_video + video_to_text).mean(dim=0))
    return torch.stack(maps).mean(dim=0).reshape(layout.grid)


def test_mask_equals_naive_full_softmax_computation(t2v_pipe):
    fbdm, recorder = FBDM(SUBJECT, fbdm_steps=1, fg_threshold=0.4), Recorder()
    run_forward(t2v_pipe, [fbdm, recorder])
    expected_map = normalise_per_frame(naive_fbdm_map(recorder.calls, 2, SUBJECT)).float()
    record = fbdm.history[0]
    torch.testing.assert_close(record.attention_map, expected_map, atol=1e-5, rtol=0)
    clear = (expected_map - 0.4).abs() > 1e-4  # tokens not on the threshold's edge
    assert torch.equal(fbdm.mask[clear], (expected_map >= 0.4)[clear])
    assert 0 < fbdm.mask.sum() < fbdm.mask.numel()


def test_each_frame_is_min_max_normalised():
    attention_map = torch.tensor([[[1.0, 3.0]], [[10.0, 20.0]], [[5.0, 5.0]]])
    normalised = normalise_per_frame(attention_map)
    assert torch.equal(normalised, torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 0.0]]]))


def test_only_the_chosen_layers_are_averaged(t2v_pipe):
    every_layer, first_layer, recorder = FBDM(SUBJECT, 1), FBDM(SUBJECT, 1, layers=[0]), Recorder()
    run_forward(t2v_pipe, [every_layer, first_layer, recorder])
    expected = normalise_per_frame(naive_fbdm_map({0: recorder.calls[0]}, 2, SUBJECT)).float()
    torch.testing.assert_close(first_layer.history[0].attention_map, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(first_layer.history[0].attention_map, every_layer.history[0].attention_map)


class MaskSeenByStep:
    """Test plugin: which mask FBDM offers when each step starts its forward."""

    name = "test.mask-seen"

    def __init__(self, fbdm):
        self.fbdm = fbdm
        self.seen: dict[int, torch.Tensor | None] = {}

    @attnkit.hookimpl
    def attnkit_model_inputs(self, session):
        self.seen[session.step] = None if self.fbdm.mask is None else self.fbdm.mask.clone()


def test_mask_lags_one_step_and_stops_refreshing_at_fbdm_steps(t2v_pipe):
    fbdm = FBDM(SUBJECT, fbdm_steps=2)
    seen = MaskSeenByStep(fbdm)
    run_steps_with(t2v_pipe, [fbdm, seen], [900, 600, 300, 100])
    assert seen.seen[0] is None  # step 0: all reference tokens
    assert [record.step for record in fbdm.history] == [0, 1]
    assert torch.equal(seen.seen[1], fbdm.history[0].mask)
    assert torch.equal(seen.seen[2], fbdm.history[1].mask)
    assert torch.equal(seen.seen[3], fbdm.history[1].mask)  # kept fixed after fbdm_steps


def test_without_a_reference_branch_fbdm_does_nothing(t2v_pipe):
    fbdm = FBDM(SUBJECT, fbdm_steps=1)
    run_forward(
        t2v_pipe, [fbdm], inputs=forward_inputs(t2v_pipe, batch=2), branches={"uncond": [0], "cond": [1]}
    )
    assert fbdm.mask is None and fbdm.history == []


def test_fbdm_declares_where_it_reads_maps():
    fbdm = FBDM(SUBJECT, fbdm_steps=2, layers=[0, 3], branch="ref")
    assert fbdm.attnkit_where == attnkit.Where(steps=range(2), layers={0, 3}, branches=("ref",))
    assert FBDM(SUBJECT).attnkit_where.layers is None  # every layer by default
