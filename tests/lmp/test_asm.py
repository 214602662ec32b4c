"""ASM: eq. 7-8's loss and gradient against a naive full-softmax implementation; the step lowers the loss."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit_lmp.asm import ASM, appearance_loss

from .conftest import HiddenStatesBefore, Recorder, run_forward, run_steps_with

SUBJECT = [2, 3]


def naive_appearance_loss(q_video, k_video, q_text_ref, k_text_ref, subject, top_fraction, scale):
    """Eq. 7-8 with full softmaxes over [K^p_ref ; K^v_tar]: both blocks, head-mean, top fraction, mean."""
    keys = torch.cat([k_text_ref, k_video], dim=2)
    video_weights = torch.softmax(q_video @ keys.transpose(-1, -2) * scale, dim=-1)[..., subject]
    subject_weights = torch.softmax(q_text_ref[:, :, subject] @ keys.transpose(-1, -2) * scale, dim=-1)
    subject_weights = subject_weights[..., k_text_ref.shape[2] :]
    values = torch.cat([video_weights.mean(dim=1).flatten(), subject_weights.mean(dim=1).flatten()])
    keep = max(1, int(torch.tensor(top_fraction * values.numel()).ceil()))
    return torch.topk(values, keep).values.mean()


def random_inputs(seed=0, heads=3, video=37, text=11, dim=8):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(1, heads, video, dim), (1, heads, video, dim), (1, heads, text, dim), (1, heads, text, dim)]
    return [
        (torch.randn(shape, generator=generator, dtype=torch.float64) * 2).requires_grad_(True)
        for shape in shapes
    ]


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "chunked"])
def test_loss_equals_the_naive_full_softmax_loss(fused):
    inputs = random_inputs()
    ours = appearance_loss(
        *inputs, subject_tokens=SUBJECT, top_fraction=0.2, scale=0.35, chunk_size=5, fused=fused
    )
    naive = naive_appearance_loss(*inputs, SUBJECT, 0.2, 0.35)
    torch.testing.assert_close(ours, naive, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "chunked"])
def test_gradient_matches_autograd_through_the_naive_loss(fused):
    inputs = random_inputs(seed=1)
    ours = torch.autograd.grad(
        appearance_loss(
            *inputs, subject_tokens=SUBJECT, top_fraction=0.2, scale=0.35, chunk_size=5, fused=fused
        ),
        inputs,
    )
    naive = torch.autograd.grad(naive_appearance_loss(*inputs, SUBJECT, 0.2, 0.35), inputs)
    for mine, expected in zip(ours, naive):
        assert expected.abs().max() > 0
        torch.testing.assert_close(mine, expected, atol=1e-12, rtol=1e-9)


def naive_loss_of_states(project, states, layout, subject, target_row, reference_row=2):
    q, k, _ = project(states)
    return naive_appearance_loss(
        q[target_row : target_row + 1, :, layout.video],
        k[target_row : target_row + 1, :, layout.video],
        q[reference_row : reference_row + 1, :, layout.text],
        k[reference_row : reference_row + 1, :, layout.text],
        subject,
        0.2,
        q.shape[-1] ** -0.5,
    )


def test_the_step_is_minus_eta_times_the_naive_gradient_on_target_video_states(t2v_pipe):
    eta = 100.0
    before, recorder = HiddenStatesBefore(), Recorder()
    run_forward(t2v_pipe, [before, ASM(SUBJECT, eta=eta, asm_steps=1, cfg_rows="both"), recorder])
    for layer, call in recorder.calls.items():
        layout, h_before = call["layout"], before.before[layer]
        states = h_before.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = sum(naive_loss_of_states(call["project"], states, layout, SUBJECT, row) for row in (0, 1))
            (gradient,) = torch.autograd.grad(loss, states)
        expected = h_before.clone()
        expected[:2, layout.video] -= eta * gradient[:2, layout.video]
        assert gradient[:2, layout.video].abs().max() > 0
        torch.testing.assert_close(call["hidden_states"], expected, atol=1e-5, rtol=1e-4)
        # text tokens and the reference row are never moved
        torch.testing.assert_close(
            call["hidden_states"][:, layout.text], h_before[:, layout.text], atol=0, rtol=0
        )
        torch.testing.assert_close(call["hidden_states"][2], h_before[2], atol=0, rtol=0)


def test_the_loss_decreases_after_the_step(t2v_pipe):
    before, recorder = HiddenStatesBefore(), Recorder()
    asm = ASM(SUBJECT, eta=100.0, asm_steps=1, cfg_rows="both")
    run_forward(t2v_pipe, [before, asm, recorder])
    for layer, call in recorder.calls.items():
        layout = call["layout"]
        with torch.no_grad():
            for row in (0, 1):
                loss_before = naive_loss_of_states(
                    call["project"], before.before[layer], layout, SUBJECT, row
                )
                loss_after = naive_loss_of_states(
                    call["project"], call["hidden_states"], layout, SUBJECT, row
                )
                assert loss_after < loss_before, (layer, row, float(loss_before), float(loss_after))
    assert [(step, layer) for step, layer, _ in asm.losses] == [(0, 0), (0, 1)]


def test_by_default_only_the_conditional_row_is_moved(t2v_pipe):
    before, recorder = HiddenStatesBefore(), Recorder()
    run_forward(t2v_pipe, [before, ASM(SUBJECT, asm_steps=1), recorder])
    call = recorder.calls[0]
    assert torch.equal(call["hidden_states"][0], before.before[0][0])
    assert not torch.equal(call["hidden_states"][1], before.before[0][1])


def test_inactive_from_asm_steps_on_and_outside_its_layers(t2v_pipe):
    before, recorder = HiddenStatesBefore(), Recorder()
    asm = ASM(SUBJECT, asm_steps=1, layers=[1])
    run_steps_with(t2v_pipe, [before, asm, recorder], [900, 500])
    assert [(step, layer) for step, layer, _ in asm.losses] == [(0, 1)]
    for layer, call in recorder.calls.items():  # recorded at step 1
        assert torch.equal(call["hidden_states"], before.before[layer])


def test_the_model_weights_get_no_gradient(t2v_pipe):
    run_forward(t2v_pipe, [ASM(SUBJECT, asm_steps=1)])
    assert all(parameter.grad is None for parameter in t2v_pipe.transformer.parameters())


def test_asm_records_how_far_each_step_moved_the_hidden_states_relative_to_their_size():
    from attnkit_lmp.asm import ASM

    class Call:
        step, layer = 3, 1
        hidden_states = torch.ones(2, 6, 4)

    plugin = ASM(subject_tokens=[0], eta=10.0)
    gradient = torch.zeros(1, 6, 4)
    gradient[:, 2:] = 0.5  # the video tokens are 2..5
    plugin._take_step(Call(), [1], slice(2, 6), torch.tensor(0.2), gradient)
    (step, layer, relative), = plugin.relative_steps
    assert (step, layer) == (3, 1)
    assert relative == pytest.approx(10.0 * 0.5 * 4 / 4)  # |eta g| / |h| over the 16 moved values


def test_asm_declares_its_gate_and_eta_zero_fires_at_no_step(t2v_pipe):
    asm = ASM(SUBJECT, asm_steps=3, layers=[1], reference_branch="ref")
    assert asm.attnkit_where == attnkit.Where(steps=range(3), layers={1}, branches=("ref",))
    switched_off = ASM(SUBJECT, eta=0.0, asm_steps=1)
    assert switched_off.attnkit_where.steps == frozenset()
    run_forward(t2v_pipe, [switched_off])
    assert switched_off.losses == []
