"""Shared fixtures of the LMP tests: tiny pipelines, one transformer forward with named rows, small videos."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import attnkit
from attnkit.testing import TINY_HEIGHT, TINY_NUM_FRAMES, TINY_WIDTH, tiny_cogvideox_pipeline

REFERENCE_PROMPT = "a red dog runs left"
PROMPT = "a blue cat runs left"
BRANCHES = {"uncond": [0], "cond": [1], "reference": [2]}


@pytest.fixture(scope="session")
def t2v_pipe():
    return tiny_cogvideox_pipeline("t2v")


@pytest.fixture(scope="session")
def i2v_pipe():
    return tiny_cogvideox_pipeline("i2v")


def forward_inputs(pipe, batch: int = 3, seed: int = 0, timestep: int = 500) -> dict:
    """Random transformer inputs of the tiny T2V geometry, with RoPE as the pipeline prepares it."""
    generator = torch.Generator().manual_seed(seed)
    transformer = pipe.transformer
    latent_frames = (TINY_NUM_FRAMES - 1) // pipe.vae_scale_factor_temporal + 1
    spatial = pipe.vae_scale_factor_spatial
    shape = (
        batch,
        latent_frames,
        transformer.config.in_channels,
        TINY_HEIGHT // spatial,
        TINY_WIDTH // spatial,
    )
    text = torch.randn(
        batch, transformer.config.max_text_seq_length, transformer.config.text_embed_dim, generator=generator
    )
    return {
        "hidden_states": torch.randn(shape, generator=generator),
        "encoder_hidden_states": text,
        "timestep": torch.full((batch,), timestep, dtype=torch.long),
        "image_rotary_emb": pipe._prepare_rotary_positional_embeddings(
            TINY_HEIGHT, TINY_WIDTH, latent_frames, "cpu"
        ),
        "return_dict": False,
    }


class Recorder:
    """Test plugin: keeps each layer's q, k, v, mask, hidden states and attention output (after other plugins)."""

    name = "test.recorder"

    def __init__(self):
        self.calls: dict[int, dict] = {}

    @attnkit.hookimpl(trylast=True)
    def attnkit_qkv(self, call):
        self.calls[call.layer] = {
            "q": call.q.detach().clone(),
            "k": call.k.detach().clone(),
            "v": call.v.detach().clone(),
            "mask": call.attention_mask,
            "hidden_states": call.hidden_states.detach().clone(),
            "layout": call.layout,
            "scale": call.softmax_scale,
            "project": call.project,
        }

    @attnkit.hookimpl(trylast=True)
    def attnkit_attention_output(self, call, output):
        self.calls[call.layer]["output"] = output.detach().clone()


class HiddenStatesBefore:
    """Test plugin: the hidden states entering each attention call before any other plugin moves them."""

    name = "test.hidden-before"

    def __init__(self):
        self.before: dict[int, torch.Tensor] = {}

    @attnkit.hookimpl(tryfirst=True)
    def attnkit_before_attention(self, call):
        self.before[call.layer] = call.hidden_states.detach().clone()


class TransferProbe:
    """Test plugin for ``motion_transfer`` runs: each forward's inputs and branches, each call's branches.

    Read-only. ``forwards`` holds ``(step, branches, inputs, transformer)`` after every other plugin added
    its rows; ``calls`` holds ``(step, layer, role, branches)`` of every hooked attention call.
    """

    name = "test.transfer-probe"

    def __init__(self):
        self.forwards: list[tuple[int, dict, dict, object]] = []
        self.calls: list[tuple[int, int, str, dict]] = []

    @attnkit.hookimpl(trylast=True)
    def attnkit_model_inputs(self, session, inputs):
        copied = {
            key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in inputs.inputs.items()
        }
        self.forwards.append((session.step, dict(session.branches), copied, session.adapter.model))

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.calls.append((call.step, call.layer, call.layout.role, dict(call.branches)))


def probe_transfer(monkeypatch, probe) -> None:
    """Make ``motion_transfer`` attach ``probe`` beside its own plugins."""
    from attnkit_lmp import transfer as transfer_module

    original = transfer_module.make_plugins

    def with_probe(*args, **kwargs):
        plugins, fbdm, asm = original(*args, **kwargs)
        return [*plugins, probe], fbdm, asm

    monkeypatch.setattr(transfer_module, "make_plugins", with_probe)


def run_forward(pipe, plugins, inputs=None, branches=BRANCHES):
    inputs = forward_inputs(pipe) if inputs is None else inputs
    with torch.no_grad(), attnkit.attach(pipe.transformer, plugins=plugins, branches=branches):
        return pipe.transformer(**inputs)[0]


def moving_square_video(num_frames: int = 12, height: int = 40, width: int = 48) -> np.ndarray:
    """A white square moving right over a dark background, (F, H, W, 3) uint8."""
    video = np.full((num_frames, height, width, 3), 30, dtype=np.uint8)
    for frame in range(num_frames):
        left = 2 + 2 * frame
        video[frame, 12:24, left : left + 12] = 230
    return video


@pytest.fixture(scope="session")
def reference_gif(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "reference.gif"
    iio.imwrite(path, moving_square_video(), duration=100, loop=0)
    return path


@pytest.fixture(scope="session")
def reference_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "reference.mp4"
    iio.imwrite(path, moving_square_video(), plugin="pyav", codec="libx264", fps=8)
    return path


def run_steps_with(pipe, plugins, timesteps, branches=BRANCHES):
    """One forward per timestep in one session: each new timestep is a new denoising step."""
    with torch.no_grad(), attnkit.attach(pipe.transformer, plugins=plugins, branches=branches):
        for timestep in timesteps:
            pipe.transformer(**forward_inputs(pipe, seed=timestep, timestep=timestep))
