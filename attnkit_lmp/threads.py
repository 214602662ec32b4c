"""The ``--threads`` option of the commands: how many CPU threads torch may use.

torch's default is one thread per core. On a machine whose cores are busy with other work, or with the
small tensors of the toy models, that oversubscribes: a toy transfer that takes 25 s on one thread took
308 s with the default on a shared 2-core machine. The default here is half the cores this process may
run on, at most 4, or ``OMP_NUM_THREADS`` when it is set.
"""

from __future__ import annotations

import argparse
import os

MAX_DEFAULT_THREADS = 4


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def default_threads(per_process: bool = False) -> int:
    """``OMP_NUM_THREADS`` if set to a positive integer, else half the usable cores (1..4).

    With ``per_process`` (data-parallel commands under ``accelerate launch``) that share is divided among
    the ``WORLD_SIZE`` processes of the machine.
    """
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    threads = max(1, min(MAX_DEFAULT_THREADS, usable_cores() // 2))
    if per_process:
        processes = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")).strip()
        threads = max(1, threads // max(1, int(processes) if processes.isdigit() else 1))
    return threads


def positive_threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads {text!r} must be a positive integer, e.g. 1")
    return value


def add_threads_argument(parser: argparse.ArgumentParser, per_process: bool = False) -> None:
    share = ", divided among the processes of this machine" if per_process else ""
    parser.add_argument(
        "--threads",
        type=positive_threads,
        default=None,
        help=(
            f"torch CPU threads{' per process' if per_process else ''} (default: OMP_NUM_THREADS if set, "
            f"else half the usable cores, at most {MAX_DEFAULT_THREADS}{share}; here {default_threads(per_process)})"
        ),
    )


def apply_threads(requested: int | None) -> int:
    """Set torch's CPU threads to ``requested`` (or the default) and return the number set."""
    import torch

    threads = requested if requested is not None else default_threads()
    torch.set_num_threads(threads)
    return threads
