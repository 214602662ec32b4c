"""Which batch rows of a transformer forward are which branch, and how many forwards a denoising step has.

A pipeline running classifier-free guidance either batches its ``uncond`` and ``cond`` rows in one forward
(diffusers' default) or runs one forward per branch; the adapter knows which. A caller may also name the
rows itself (``attach(..., branches=...)``).
"""

from __future__ import annotations

from typing import Callable

from .adapter import Adapter
from .call import Branches

BranchSpec = Branches | Callable[[int], Branches] | None


def branch_rows(
    spec: BranchSpec, pipeline, adapter: Adapter, batch_size: int, forward_in_step: int
) -> Branches:
    """The branches of a forward of ``batch_size`` rows, the ``forward_in_step``-th of its step: the caller's
    ``spec`` (a dict, or a function of the batch size) if given, else the adapter's reading of ``pipeline``."""
    if callable(spec):
        spec = spec(batch_size)
    if spec is not None:
        rows = sorted(row for branch_rows in spec.values() for row in branch_rows)
        if rows and (rows[-1] >= batch_size or rows[0] < 0):
            raise ValueError(
                f"branches {spec} name rows outside the batch of {batch_size}; "
                f"rows must be in 0..{batch_size - 1}"
            )
        return {name: list(branch_rows) for name, branch_rows in spec.items()}
    if pipeline is not None and getattr(pipeline, "current_timestep", 0) is None:
        # diffusers pipelines set current_timestep inside their denoising loop only; a forward while it
        # is None comes from elsewhere, and the attached pipeline's guidance says nothing about its rows.
        raise ValueError(
            f"the transformer ran outside the attached {type(pipeline).__name__}'s denoising loop "
            "(another pipeline sharing it, or a direct call), so that pipeline's guidance setting cannot "
            "say which rows are uncond and cond; attach the pipeline that runs it, or pass "
            "attach(..., branches={...})"
        )
    # The adapter knows its pipelines' loop: batched guidance halves, or one forward per branch.
    return adapter.forward_branches(pipeline, batch_size, forward_in_step)


def forwards_per_step(pipeline, adapter: Adapter) -> float:
    """How many forwards of a pipeline's call share one timestep: one, or two where the pipeline runs
    each guidance branch as its own forward. A forward beyond them at an unchanged timestep starts a new
    step (a second call of a pipeline whose steps repeat the first's timesteps)."""
    if pipeline is None:
        return float("inf")  # a bare model may be called any number of times per step
    if adapter.forward_branches(pipeline, 1, 1) == adapter.forward_branches(pipeline, 1, 0):
        return 1  # a second forward would be labelled like the first: guidance is batched in one forward
    # Only an explicit flag says guidance is off: HunyuanVideo's true CFG is decided inside its __call__.
    return 1 if getattr(pipeline, "do_classifier_free_guidance", None) is False else 2
