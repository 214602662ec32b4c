"""The adapter contract's pipeline side: the session asks the adapter which attributes hold transformers,
which rows are which branch and how many steps run, and reads no private pipeline attribute itself."""

from __future__ import annotations

import torch

import attnkit
from attnkit.adapters.cogvideox import CogVideoXAdapter
from attnkit.testing import TINY_CALL_KWARGS, tiny_cogvideox_pipeline, tiny_cogvideox_transformer
from conformance.plugins import ReadOnlyProbe  # tests/ has no __init__.py, so pytest puts it on sys.path


class RecordingPipeline:
    """Forwards attribute reads to a pipeline and remembers their names."""

    def __init__(self, pipeline):
        object.__setattr__(self, "_wrapped", pipeline)
        object.__setattr__(self, "read", [])

    def __getattr__(self, name):
        self.read.append(name)
        return getattr(self._wrapped, name)


class StepCount:
    name = "step-count"

    def __init__(self):
        self.seen: list[int | None] = []

    @attnkit.hookimpl
    def attnkit_step_start(self, session):
        self.seen.append(session.num_steps)


def run(pipe):
    return pipe(prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **TINY_CALL_KWARGS).frames


def test_the_session_reads_only_public_pipeline_attributes():
    pipe = tiny_cogvideox_pipeline("t2v")
    recording = RecordingPipeline(pipe)
    steps = StepCount()
    with attnkit.attach(recording, plugins=[ReadOnlyProbe(), steps]) as session:
        run(pipe)
        assert session.branches == {"uncond": [0], "cond": [1]}  # CogVideoX's guidance, read by its adapter
    assert steps.seen == [TINY_CALL_KWARGS["num_inference_steps"]] * 2
    assert recording.read and not [name for name in recording.read if name.startswith("_")]


class ExpertsAdapter(CogVideoXAdapter):
    """A third party's adapter whose pipelines hold a second transformer, and name their rows themselves."""

    name = "experts"
    pipeline_transformers = ("transformer", "refiner")

    def forward_branches(self, pipeline, batch_size, forward_in_step):
        return {"negative": [0], "positive": list(range(1, batch_size))}


class ExpertsAdapters:
    name = "experts-adapters"

    @attnkit.hookimpl
    def attnkit_register_adapters(self, register):
        register(ExpertsAdapter)


class BranchLog:
    name = "branch-log"

    def __init__(self):
        self.branches = []

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        self.branches.append(dict(call.branches))


def test_the_adapter_names_the_pipeline_transformers_and_the_branch_rows():
    pipe = tiny_cogvideox_pipeline("t2v")
    refiner = tiny_cogvideox_transformer("t2v", seed=1)
    holder = RecordingPipeline(pipe)
    object.__setattr__(holder, "refiner", refiner)
    log = BranchLog()
    with attnkit.attach(holder, plugins=[ExpertsAdapters(), log]) as session:
        assert session.models == [pipe.transformer, refiner]
        assert {type(adapter) for adapter in session.adapters} == {ExpertsAdapter}
        run(pipe)
    assert log.branches and all(branches == {"negative": [0], "positive": [1]} for branches in log.branches)
    assert type(refiner.transformer_blocks[0].attn1.processor).__name__ == "CogVideoXAttnProcessor2_0"  # restored
