"""RMTM: the output equals a hand-written extended attention; rows, steps, layers and value scaling."""

from __future__ import annotations

import torch

import attnkit
from attnkit_lmp.fbdm import FBDM
from attnkit_lmp.rmtm import RMTM

from .conftest import Recorder, forward_inputs, run_forward, run_steps_with

LAMBDA = 0.9


class FixedMask:
    """Stands in for FBDM with a known foreground."""

    def __init__(self, indices):
        self.indices = torch.tensor(indices)

    def foreground_indices(self):
        return self.indices


def extended_attention(call: dict, row: int, reference_row: int, foreground, key_scale, value_scale,
                       keep_prompt_share=True):
    """By hand: softmax(Q^v [K^p; K^v; ks K^v_ref[fg]]^T / sqrt(d)) [V^p; V^v; vs V^v_ref[fg]], or, keeping the
    prompt's share, the plain weights on K^p and one softmax over [K^v; ks K^v_ref[fg]] for the rest."""
    layout = call["layout"]
    q, k, v = (call[name][row].double() for name in ("q", "k", "v"))
    reference_k = call["k"][reference_row, :, layout.video].double()[:, foreground]
    reference_v = call["v"][reference_row, :, layout.video].double()[:, foreground]
    video_queries = q[:, layout.video]
    if not keep_prompt_share:
        keys = torch.cat([k, key_scale * reference_k], dim=1)
        values = torch.cat([v, value_scale * reference_v], dim=1)
        weights = torch.softmax(video_queries @ keys.transpose(-1, -2) * call["scale"], dim=-1)
        return (weights @ values).float()
    plain = torch.softmax(video_queries @ k.transpose(-1, -2) * call["scale"], dim=-1)
    prompt = plain[..., layout.text]
    keys = torch.cat([k[:, layout.video], key_scale * reference_k], dim=1)
    values = torch.cat([v[:, layout.video], value_scale * reference_v], dim=1)
    video = torch.softmax(video_queries @ keys.transpose(-1, -2) * call["scale"], dim=-1)
    video = video * (1 - prompt.sum(-1, keepdim=True))
    return (prompt @ v[:, layout.text] + video @ values).float()


def plain_attention(call: dict, row: int):
    q, k, v = (call[name][row].double() for name in ("q", "k", "v"))
    return (torch.softmax(q @ k.transpose(-1, -2) * call["scale"], dim=-1) @ v).float()


FOREGROUND = [0, 3, 5, 17, 30, 47]


def test_target_video_queries_get_the_hand_written_extended_attention(t2v_pipe):
    recorder = Recorder()
    run_forward(t2v_pipe, [RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND)), recorder])
    for call in recorder.calls.values():
        video = call["layout"].video
        for row in (0, 1):
            expected = extended_attention(call, row, 2, FOREGROUND, LAMBDA, 1.0)
            torch.testing.assert_close(call["output"][row, :, video], expected, atol=1e-5, rtol=1e-5)


def test_without_keeping_the_prompt_share_it_is_one_softmax_over_all_keys(t2v_pipe):
    recorder = Recorder()
    rmtm = RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND), keep_prompt_share=False)
    run_forward(t2v_pipe, [rmtm, recorder])
    for call in recorder.calls.values():
        expected = extended_attention(call, 1, 2, FOREGROUND, LAMBDA, 1.0, keep_prompt_share=False)
        torch.testing.assert_close(call["output"][1, :, call["layout"].video], expected, atol=1e-5, rtol=1e-5)
        kept = extended_attention(call, 1, 2, FOREGROUND, LAMBDA, 1.0)
        assert not torch.allclose(expected, kept, atol=1e-4)  # the two choices differ on this model


def test_text_queries_and_the_reference_row_see_only_their_own_tokens(t2v_pipe):
    recorder = Recorder()
    run_forward(t2v_pipe, [RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND)), recorder])
    for call in recorder.calls.values():
        text = call["layout"].text
        for row in (0, 1):
            torch.testing.assert_close(
                call["output"][row, :, text], plain_attention(call, row)[:, text], atol=1e-5, rtol=1e-5
            )
        torch.testing.assert_close(call["output"][2], plain_attention(call, 2), atol=1e-5, rtol=1e-5)


def test_scale_values_multiplies_the_reference_values_by_lambda(t2v_pipe):
    recorder = Recorder()
    run_forward(
        t2v_pipe, [RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND), scale_values=True), recorder]
    )
    call = recorder.calls[1]
    expected = extended_attention(call, 1, 2, FOREGROUND, LAMBDA, LAMBDA)
    torch.testing.assert_close(call["output"][1, :, call["layout"].video], expected, atol=1e-5, rtol=1e-5)


def test_without_fbdm_all_reference_video_tokens_are_used(t2v_pipe):
    recorder = Recorder()
    run_forward(t2v_pipe, [RMTM(LAMBDA, rmtm_steps=1), recorder])
    call = recorder.calls[0]
    everything = list(range(call["layout"].num_video_tokens))
    expected = extended_attention(call, 1, 2, everything, LAMBDA, 1.0)
    torch.testing.assert_close(call["output"][1, :, call["layout"].video], expected, atol=1e-5, rtol=1e-5)


def test_fbdm_before_its_first_mask_means_all_reference_tokens(t2v_pipe):
    recorder = Recorder()
    fbdm = FBDM([2], fbdm_steps=1)
    run_forward(t2v_pipe, [fbdm, RMTM(LAMBDA, rmtm_steps=1, fbdm=fbdm), recorder])
    call = recorder.calls[0]
    everything = list(range(call["layout"].num_video_tokens))
    expected = extended_attention(call, 1, 2, everything, LAMBDA, 1.0)
    torch.testing.assert_close(call["output"][1, :, call["layout"].video], expected, atol=1e-5, rtol=1e-5)


def test_cond_only_leaves_the_unconditional_row_plain(t2v_pipe):
    recorder = Recorder()
    run_forward(t2v_pipe, [RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND), cfg_rows="cond"), recorder])
    call = recorder.calls[0]
    torch.testing.assert_close(call["output"][0], plain_attention(call, 0), atol=1e-5, rtol=1e-5)
    expected = extended_attention(call, 1, 2, FOREGROUND, LAMBDA, 1.0)
    torch.testing.assert_close(call["output"][1, :, call["layout"].video], expected, atol=1e-5, rtol=1e-5)


def test_layers_outside_the_set_are_untouched(t2v_pipe):
    recorder = Recorder()
    run_forward(t2v_pipe, [RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND), layers=[1]), recorder])
    torch.testing.assert_close(
        recorder.calls[0]["output"][1], plain_attention(recorder.calls[0], 1), atol=1e-5, rtol=1e-5
    )
    call = recorder.calls[1]
    expected = extended_attention(call, 1, 2, FOREGROUND, LAMBDA, 1.0)
    torch.testing.assert_close(call["output"][1, :, call["layout"].video], expected, atol=1e-5, rtol=1e-5)


def test_inactive_from_rmtm_steps_on(t2v_pipe):
    recorder = Recorder()
    run_steps_with(t2v_pipe, [RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND)), recorder], [900, 500])
    call = recorder.calls[0]  # recorded at step 1, the last
    torch.testing.assert_close(call["output"][1], plain_attention(call, 1), atol=1e-5, rtol=1e-5)


def test_rmtm_declares_where_it_adds_keys():
    rmtm = RMTM(LAMBDA, rmtm_steps=4, layers=[1], reference_branch="ref")
    assert rmtm.attnkit_where == attnkit.Where(steps=range(4), layers={1}, branches=("ref",))
