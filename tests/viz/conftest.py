"""Shared runs for the recording and visualisation tests: one tiny CFG run, many recorders at once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

import attnkit
from attnkit.record import AttentionRecord, AttentionRecorder
from attnkit.testing import TINY_CALL_KWARGS, tiny_cogvideox_pipeline

PROMPT = "a red dog runs on the grass"


def run_pipeline(pipe, plugins, guidance_scale=6.0, **overrides):
    kwargs = dict(TINY_CALL_KWARGS, **overrides)
    with attnkit.attach(pipe, plugins=plugins):
        return pipe(
            PROMPT, guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(0), **kwargs
        ).frames


class CaptureQK:
    """Keeps q and k of every attention call, to compute the full softmax map the naive way."""

    name = "test.capture-qk"

    def __init__(self):
        self.calls = {}

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.calls[(call.step, call.layer)] = (
            call.q.detach().clone(),
            call.k.detach().clone(),
            call.layout,
            dict(call.branches),
        )


@dataclass
class RecordedRun:
    capture: CaptureQK
    recorders: dict[str, AttentionRecorder]
    frames: torch.Tensor
    tokenizer: object = field(repr=False)

    def full_probs(self, step: int, layer: int) -> tuple[torch.Tensor, object, dict]:
        """softmax(q k^T / sqrt(d)) of one call, the whole (batch, heads, N, N) map."""
        q, k, layout, branches = self.capture.calls[(step, layer)]
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        return scores.softmax(dim=-1), layout, branches


@pytest.fixture(scope="session")
def tiny_pipe():
    return tiny_cogvideox_pipeline("t2v")


@pytest.fixture(scope="session")
def recorded_run(tiny_pipe) -> RecordedRun:
    both_branches = ["uncond", "cond"]
    recorders = {
        "both": AttentionRecorder(
            tokens=["dog", "grass"], prompt=PROMPT, direction="both", branches=both_branches
        ),
        "text->video": AttentionRecorder(
            tokens=["dog", "grass"], prompt=PROMPT, direction="text->video", branches=both_branches
        ),
        "video->text": AttentionRecorder(
            tokens=["dog", "grass"], prompt=PROMPT, direction="video->text", branches=both_branches
        ),
        "head 1": AttentionRecorder(tokens=["dog"], prompt=PROMPT, heads=[1]),
        "multi-token word": AttentionRecorder(tokens=["red dog", 1, 2], prompt=PROMPT),
        "means": AttentionRecorder(tokens=["dog"], prompt=PROMPT, reduce_layers=True, reduce_steps=True),
        "selected": AttentionRecorder(tokens=["dog"], prompt=PROMPT, layers=[1], steps=[1]),
    }
    capture = CaptureQK()
    frames = run_pipeline(tiny_pipe, [capture, *recorders.values()])
    return RecordedRun(capture=capture, recorders=recorders, frames=frames, tokenizer=tiny_pipe.tokenizer)


@pytest.fixture(scope="session")
def record(recorded_run) -> AttentionRecord:
    return recorded_run.recorders["both"].record
