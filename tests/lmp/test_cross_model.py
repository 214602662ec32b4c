"""FBDM, RMTM and ASM, unchanged, on tiny HunyuanVideo (joint calls) and Wan (self + cross) transformers.

Each test runs one transformer forward with a target batch (rows ``uncond`` and ``cond``) and a reference
row added by a test plugin through ``inputs.add_rows`` (as ``ReferenceBranch`` does; on HunyuanVideo with
its own padded text mask and pooled embedding), and checks the plugin against a naive full-softmax
computation written here from the recorded q/k/v.
"""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.testing import tiny_hunyuan_transformer, tiny_wan_transformer
from attnkit.testing.tiny_hunyuan import HUNYUAN_GRID, HUNYUAN_TEXT_LEN, POOLED_DIM
from attnkit.testing.tiny_hunyuan import LATENT_CHANNELS as HUNYUAN_CHANNELS
from attnkit.testing.tiny_hunyuan import TEXT_EMBED_DIM as HUNYUAN_TEXT_DIM
from attnkit.testing.tiny_wan import LATENT_CHANNELS as WAN_CHANNELS
from attnkit.testing.tiny_wan import TEXT_EMBED_DIM as WAN_TEXT_DIM
from attnkit.testing.tiny_wan import WAN_GRID, WAN_TEXT_LEN
from attnkit_lmp.asm import ASM, cross_appearance_loss
from attnkit_lmp.fbdm import FBDM, normalise_per_frame
from attnkit_lmp.rmtm import RMTM

from .conftest import HiddenStatesBefore, Recorder
from .test_asm import naive_appearance_loss

SUBJECT = [2, 3]
TARGET_BRANCHES = {"uncond": [0], "cond": [1]}
REFERENCE_ROW = 2
LAMBDA = 0.9
FOREGROUND = [0, 3, 5, 17, 30, 47]
HUNYUAN_PADDING = 5  # the target rows' last text tokens are padding, masked by the model
HUNYUAN_REFERENCE_PADDING = 7  # the reference prompt is shorter: more of its tokens are padding


@pytest.fixture(scope="module")
def hunyuan():
    return tiny_hunyuan_transformer()


@pytest.fixture(scope="module")
def wan():
    return tiny_wan_transformer("t2v")


def latent_input(channels: int, grid: tuple[int, int, int], rows: int, generator) -> torch.Tensor:
    frames, height, width = grid
    return torch.randn(rows, channels, frames, height * 2, width * 2, generator=generator)  # patch 2 in h, w


def hunyuan_inputs(seed: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor, dict]:
    """(target inputs of 2 rows with padded text, the reference row's latents, its text embeddings, its
    other per-row inputs: a text mask with more padding and a pooled embedding of its own)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(2, HUNYUAN_TEXT_LEN, dtype=torch.long)
    mask[:, -HUNYUAN_PADDING:] = 0
    inputs = {
        "hidden_states": latent_input(HUNYUAN_CHANNELS, HUNYUAN_GRID, 2, generator),
        "timestep": torch.tensor([700, 700]),
        "encoder_hidden_states": torch.randn(2, HUNYUAN_TEXT_LEN, HUNYUAN_TEXT_DIM, generator=generator),
        "encoder_attention_mask": mask,
        "pooled_projections": torch.randn(2, POOLED_DIM, generator=generator),
        "guidance": torch.tensor([6000.0, 6000.0]),
        "return_dict": False,
    }
    reference = latent_input(HUNYUAN_CHANNELS, HUNYUAN_GRID, 1, generator)
    reference_text = torch.randn(1, HUNYUAN_TEXT_LEN, HUNYUAN_TEXT_DIM, generator=generator)
    reference_mask = torch.ones(1, HUNYUAN_TEXT_LEN, dtype=torch.long)
    reference_mask[:, -HUNYUAN_REFERENCE_PADDING:] = 0
    row_inputs = {
        "encoder_attention_mask": reference_mask,
        "pooled_projections": torch.randn(1, POOLED_DIM, generator=generator),
    }
    return inputs, reference, reference_text, row_inputs


def wan_inputs(seed: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor, dict]:
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "hidden_states": latent_input(WAN_CHANNELS, WAN_GRID, 2, generator),
        "timestep": torch.tensor([700, 700]),
        "encoder_hidden_states": torch.randn(2, WAN_TEXT_LEN, WAN_TEXT_DIM, generator=generator),
        "return_dict": False,
    }
    reference = latent_input(WAN_CHANNELS, WAN_GRID, 1, generator)
    return inputs, reference, torch.randn(1, WAN_TEXT_LEN, WAN_TEXT_DIM, generator=generator), {}


MODELS = {"hunyuan": hunyuan_inputs, "wan": wan_inputs}


class AddReference:
    """Test plugin: appends one ``reference`` row to every forward, as ReferenceBranch does."""

    name = "test.add-reference"

    def __init__(self, latents: torch.Tensor, text: torch.Tensor, row_inputs: dict):
        self.latents, self.text, self.row_inputs = latents, text, row_inputs

    @attnkit.hookimpl
    def attnkit_model_inputs(self, inputs):
        inputs.add_rows("reference", self.latents, self.text, **self.row_inputs)


def run(model_name: str, model, plugins, seed: int = 0) -> torch.Tensor:
    inputs, reference, reference_text, row_inputs = MODELS[model_name](seed)
    adds_reference = AddReference(reference, reference_text, row_inputs)
    with torch.no_grad(), attnkit.attach(model, plugins=[adds_reference, *plugins], branches=TARGET_BRANCHES):
        return model(**inputs)[0]


def key_bias(call: dict, row: int) -> torch.Tensor:
    """The model's mask of ``row`` as an additive bias over its own keys (0 where no mask)."""
    mask = call["mask"]
    if mask is None:
        return torch.zeros(call["k"].shape[2], dtype=torch.float64)
    mask = mask[row if mask.shape[0] > 1 else 0].reshape(-1, mask.shape[-1])
    assert mask.shape[0] == 1, "these tests expect a key-only mask"
    return torch.zeros(mask.shape[-1], dtype=torch.float64).masked_fill(~mask[0].bool(), float("-inf"))


def full_softmax(call: dict, row: int) -> torch.Tensor:
    q, k = call["q"][row].double(), call["k"][row].double()
    return torch.softmax(q @ k.transpose(-1, -2) * call["scale"] + key_bias(call, row), dim=-1)


# --- FBDM -------------------------------------------------------------------------------------------


def naive_fbdm_map(calls: dict) -> torch.Tensor:
    """A[i] = sum_s (W[s, i] + W[i, s]) in joint calls, sum_s W[i, s] in cross calls; head- and layer-mean."""
    maps = []
    for call in calls.values():
        layout = call["layout"]
        if layout.role == "self":
            continue
        weights = full_softmax(call, REFERENCE_ROW)  # (heads, queries, keys)
        subject = [layout.key_span("text").start + s for s in SUBJECT]
        video = torch.arange(layout.video.start, layout.video.stop)
        layer_map = weights[:, video][:, :, subject].sum(dim=2)
        if layout.role == "joint":
            layer_map = layer_map + weights[:, subject][:, :, video].sum(dim=1)
        maps.append(layer_map.mean(dim=0))
    return torch.stack(maps).mean(dim=0).reshape(layout.grid)


@pytest.mark.parametrize("model_name", ["hunyuan", "wan"])
def test_fbdm_mask_has_the_grid_shape_and_equals_a_naive_full_softmax(model_name, request):
    model = request.getfixturevalue(model_name)
    fbdm, recorder = FBDM(SUBJECT, fbdm_steps=1, fg_threshold=0.4), Recorder()
    run(model_name, model, [fbdm, recorder])
    grid = HUNYUAN_GRID if model_name == "hunyuan" else WAN_GRID
    assert fbdm.mask.shape == grid
    expected = normalise_per_frame(naive_fbdm_map(recorder.calls)).float()
    torch.testing.assert_close(fbdm.history[0].attention_map, expected, atol=1e-5, rtol=0)
    clear = (expected - 0.4).abs() > 1e-4
    assert torch.equal(fbdm.mask[clear], (expected >= 0.4)[clear])
    assert 0 < fbdm.mask.sum() < fbdm.mask.numel()


def test_fbdm_reads_only_wan_cross_calls(wan):
    # call.layer alternates attn1 (self, even) and attn2 (cross, odd); restricted to one self layer, FBDM
    # sees no map at all, and restricted to one cross layer it equals the naive map of that layer.
    recorder = Recorder()
    self_only, cross_only = FBDM(SUBJECT, 1, layers=[0]), FBDM(SUBJECT, 1, layers=[1])
    run("wan", wan, [self_only, cross_only, recorder])
    assert self_only.history == [] and self_only.mask is None
    expected = normalise_per_frame(naive_fbdm_map({1: recorder.calls[1]})).float()
    torch.testing.assert_close(cross_only.history[0].attention_map, expected, atol=1e-5, rtol=0)


# --- RMTM -------------------------------------------------------------------------------------------


def extended_attention(call: dict, row: int, foreground: list[int]) -> torch.Tensor:
    """By hand, with the model's mask: the plain weights on the keys outside the video span (the prompt's),
    and softmax(Q^v [K^v; lambda K^v_ref[fg]]^T / sqrt(d)) [V^v; V^v_ref[fg]] for the video keys' share.
    In self-attention every key is video, so this is the one softmax over [K_own; lambda K^v_ref[fg]]."""
    layout = call["layout"]
    q, k, v = (call[name][row].double() for name in ("q", "k", "v"))
    queries = q[:, layout.video]
    reference_k = call["k"][REFERENCE_ROW, :, layout.video].double()[:, foreground]
    reference_v = call["v"][REFERENCE_ROW, :, layout.video].double()[:, foreground]
    own_bias = key_bias(call, row)
    plain = torch.softmax(queries @ k.transpose(-1, -2) * call["scale"] + own_bias, dim=-1)
    video = torch.zeros(k.shape[1], dtype=torch.bool)
    video[layout.video] = True
    keys = torch.cat([k[:, video], LAMBDA * reference_k], dim=1)
    values = torch.cat([v[:, video], reference_v], dim=1)
    bias = torch.cat([own_bias[video], torch.zeros(len(foreground), dtype=torch.float64)])
    union = torch.softmax(queries @ keys.transpose(-1, -2) * call["scale"] + bias, dim=-1)
    union = union * plain[..., video].sum(-1, keepdim=True)
    return (plain[..., ~video] @ v[:, ~video] + union @ values).float()


class FixedMask:
    """Stands in for FBDM with a known foreground."""

    def __init__(self, indices):
        self.indices = torch.tensor(indices)

    def foreground_indices(self):
        return self.indices


@pytest.mark.parametrize("model_name", ["hunyuan", "wan"])
def test_rmtm_output_equals_hand_written_extended_attention(model_name, request):
    model = request.getfixturevalue(model_name)
    recorder = Recorder()
    run(model_name, model, [RMTM(LAMBDA, rmtm_steps=1, fbdm=FixedMask(FOREGROUND)), recorder])
    roles = set()
    for call in recorder.calls.values():
        layout, output = call["layout"], call["output"]
        roles.add(layout.role)
        if layout.role == "cross":  # no video keys to extend: the model's own cross-attention
            for row in (0, 1, REFERENCE_ROW):
                plain = (full_softmax(call, row) @ call["v"][row].double()).float()
                torch.testing.assert_close(output[row], plain, atol=1e-5, rtol=1e-5)
            continue
        for row in (0, 1):
            expected = extended_attention(call, row, FOREGROUND)
            torch.testing.assert_close(output[row, :, layout.video], expected, atol=1e-5, rtol=1e-5)
        plain_reference = (full_softmax(call, REFERENCE_ROW) @ call["v"][REFERENCE_ROW].double()).float()
        torch.testing.assert_close(output[REFERENCE_ROW], plain_reference, atol=1e-5, rtol=1e-5)
        if layout.role == "joint":  # target text queries see only the target's tokens
            plain_text = (full_softmax(call, 1) @ call["v"][1].double()).float()[:, layout.text]
            torch.testing.assert_close(output[1, :, layout.text], plain_text, atol=1e-5, rtol=1e-5)
    assert roles == ({"joint"} if model_name == "hunyuan" else {"self", "cross"})


# --- ASM --------------------------------------------------------------------------------------------


def naive_asm_loss(call: dict, states: torch.Tensor, row: int) -> torch.Tensor:
    """Eq. 7-8 in a joint call; W^T2V over the reference prompt's keys in a cross call (full softmaxes).

    The reference prompt's tokens are those its row may attend to: HunyuanVideo masks the padding at the
    end of the reference's text, so the subject positions stay the same among the kept tokens.
    """
    layout = call["layout"]
    q, k, _ = call["project"](states)
    text = layout.key_span("text")
    kept = torch.isfinite(key_bias(call, REFERENCE_ROW)[text])
    if call["mask"] is not None:
        assert kept.sum() == HUNYUAN_TEXT_LEN - HUNYUAN_REFERENCE_PADDING
    reference_keys = k[REFERENCE_ROW : REFERENCE_ROW + 1, :, text][:, :, kept].double()
    if layout.role == "cross":
        weights = torch.softmax(q[row : row + 1, :, layout.video].double() @ reference_keys.transpose(-1, -2)
                                * call["scale"], dim=-1)[..., SUBJECT]
        values = weights.mean(dim=1).flatten()
        return torch.topk(values, int(torch.tensor(0.2 * values.numel()).ceil())).values.mean()
    return naive_appearance_loss(
        q[row : row + 1, :, layout.video].double(),
        k[row : row + 1, :, layout.video].double(),
        q[REFERENCE_ROW : REFERENCE_ROW + 1, :, text][:, :, kept].double(),
        reference_keys,
        SUBJECT,
        0.2,
        call["scale"],
    )


@pytest.mark.parametrize("model_name", ["hunyuan", "wan"])
def test_asm_step_is_minus_eta_times_the_naive_gradient_and_lowers_the_loss(model_name, request):
    model = request.getfixturevalue(model_name)
    eta = 100.0
    before, recorder = HiddenStatesBefore(), Recorder()
    asm = ASM(SUBJECT, eta=eta, asm_steps=1, cfg_rows="both")
    run(model_name, model, [before, asm, recorder])
    expected_layers = [layer for layer, call in recorder.calls.items() if call["layout"].role != "self"]
    assert [layer for _, layer, _ in asm.losses] == expected_layers
    for layer, call in recorder.calls.items():
        layout, h_before = call["layout"], before.before[layer]
        if layout.role == "self":  # no text: ASM leaves Wan's attn1 alone
            assert torch.equal(call["hidden_states"], h_before)
            continue
        states = h_before.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = sum(naive_asm_loss(call, states, row) for row in (0, 1))
            (gradient,) = torch.autograd.grad(loss, states)
        video = layout.video
        assert gradient[:2, video].abs().max() > 0
        expected = h_before.clone()
        expected[:2, video] -= eta * gradient[:2, video].float()
        torch.testing.assert_close(call["hidden_states"], expected, atol=1e-5, rtol=1e-4)
        assert torch.equal(call["hidden_states"][REFERENCE_ROW], h_before[REFERENCE_ROW])
        with torch.no_grad():
            for row in (0, 1):
                loss_before = naive_asm_loss(call, h_before, row)
                loss_after = naive_asm_loss(call, call["hidden_states"], row)
                assert loss_after < loss_before, (layer, row, float(loss_before), float(loss_after))


def test_cross_appearance_loss_is_the_top_fraction_of_the_video_to_subject_map():
    generator = torch.Generator().manual_seed(3)
    queries = torch.randn(1, 2, 10, 4, generator=generator, dtype=torch.float64)
    keys = torch.randn(1, 2, 6, 4, generator=generator, dtype=torch.float64)
    weights = torch.softmax(queries @ keys.transpose(-1, -2) * 0.5, dim=-1)[..., [1, 4]].mean(dim=1).flatten()
    expected = weights.sort(descending=True).values[:4].mean()  # ceil(0.2 * 20) = 4
    torch.testing.assert_close(cross_appearance_loss(queries, keys, [1, 4], 0.2, 0.5), expected)
