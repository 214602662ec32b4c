"""An allocation tracker for CPU code: every allocation's size, kernel-internal ones included, and the peak.

A ``TorchDispatchMode`` sees the tensors each operator returns, but not the buffers a fused kernel
allocates inside itself: the CPU flash-attention kernel, given a mask whose last dimension is strided,
copies the whole broadcast mask internally, and only the allocator sees that. So the tracker reads the
CPU allocator's own events (``torch.profiler`` with ``profile_memory=True``: one event per allocation and
per free, with its size) and, beside them, records every operator output with a dispatch mode, which
names the operator that returned the largest tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@dataclass
class Allocations:
    """What a block allocated on the CPU, in bytes.

    ``largest``: the largest single allocation (kernel-internal buffers included); ``largest_op``: the
    innermost operator running when it was made. ``peak``: the highest total of bytes allocated inside
    the block and still alive, at any moment (what was alive before the block does not count).
    ``largest_output`` / ``largest_output_op``: the largest tensor an operator returned, and that operator.
    ``count``: the number of allocations.
    """

    largest: int = 0
    largest_op: str = ""
    peak: int = 0
    largest_output: int = 0
    largest_output_op: str = ""
    count: int = 0
    sizes: list[int] = field(default_factory=list, repr=False)

    def describe(self, reference_bytes: int) -> str:
        """A one-line summary with each figure as a share of ``reference_bytes`` (e.g. the N x N map)."""
        return (
            f"largest allocation {self.largest / 2**20:.2f} MiB ({100 * self.largest / reference_bytes:.2f} %, "
            f"in {self.largest_op or '?'}), peak {self.peak / 2**20:.2f} MiB "
            f"({100 * self.peak / reference_bytes:.2f} %), largest returned tensor "
            f"{self.largest_output / 2**20:.2f} MiB from {self.largest_output_op or '?'}, "
            f"{self.count} allocations"
        )


class _OutputSizes(TorchDispatchMode):
    def __init__(self, allocations: Allocations):
        super().__init__()
        self.allocations = allocations

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(result):
            if isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu":
                size = tensor.untyped_storage().nbytes()
                if size > self.allocations.largest_output:
                    self.allocations.largest_output, self.allocations.largest_output_op = size, str(func)
        return result


class track_allocations:
    """``with track_allocations() as allocations: ...`` fills an :class:`Allocations` for the block.

    CPU only: the profiler's memory events are per device, and this reads the CPU's.
    """

    def __enter__(self) -> Allocations:
        self.allocations = Allocations()
        self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._profile.__enter__()
        self._outputs = _OutputSizes(self.allocations)
        self._outputs.__enter__()
        return self.allocations

    def __exit__(self, *exc_info) -> None:
        self._outputs.__exit__(*exc_info)
        self._profile.__exit__(*exc_info)
        if exc_info[0] is not None:
            return
        events = self._profile.profiler.kineto_results.events()
        memory = sorted(
            (event for event in events if event.name() == "[memory]" and event.device_type().name == "CPU"),
            key=lambda event: event.start_ns(),
        )
        operators = [event for event in events if event.name() != "[memory]" and event.duration_ns() > 0]
        live = 0
        largest_at = None
        for event in memory:
            size = event.nbytes()
            live += size
            self.allocations.peak = max(self.allocations.peak, live)
            if size > 0:
                self.allocations.count += 1
                self.allocations.sizes.append(size)
                if size > self.allocations.largest:
                    self.allocations.largest, largest_at = size, event.start_ns()
        if largest_at is not None:
            running = [op for op in operators if op.start_ns() <= largest_at <= op.start_ns() + op.duration_ns()]
            if running:
                self.allocations.largest_op = max(running, key=lambda op: op.start_ns()).name()
