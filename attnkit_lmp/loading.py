"""Loading a pipeline for motion transfer, by local folder or hub id, onto a device, with errors that say
what to fix; shared by ``attnkit-lmp transfer`` and the evaluation sweep.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

# Names that once built the tiny random test pipelines here; they are test helpers, loaded by path now.
FORMER_TINY_MODELS = ("tiny:t2v", "tiny:i2v")


class InputError(Exception):
    """A command-line input is wrong; the message says which and how to fix it."""


def tiny_model_hint(model: str) -> str:
    """How to run a tiny test pipeline, for a ``--model`` that names one the old way (else nothing)."""
    if model not in FORMER_TINY_MODELS:
        return ""
    variant = model.removeprefix("tiny:")
    return (
        f". {model} is no longer built by name: the tiny random test pipelines are test helpers; save one "
        f"first, python -c \"from attnkit.testing import tiny_cogvideox_pipeline; "
        f"tiny_cogvideox_pipeline('{variant}').save_pretrained('tiny-{variant}')\", and pass --model tiny-{variant}"
    )


def is_hub_id(model: str) -> bool:
    """``org/name`` that is not a local path: a Hugging Face hub repository, downloaded by from_pretrained."""
    return not Path(model).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", model) is not None


def hub_offline() -> bool:
    """Whether downloads from the hub are switched off (``HF_HUB_OFFLINE``, as huggingface_hub reads it)."""
    value = os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return value.strip().lower() in {"1", "true", "yes", "on"}


def check_writable(folder: Path) -> None:
    """Prove a file can be written in ``folder``, or, while it does not exist yet, in the nearest existing
    folder above it, without creating anything (for commands that fill a folder over time, like eval
    sweeps, and create it when they start writing: a run refused by a later check leaves no folder)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{str(existing)!r} is a file")
        descriptor, probe = tempfile.mkstemp(prefix=".write-test.", dir=existing)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise InputError(
            f"output folder {str(folder)!r} is not writable ({error.strerror or error}); choose another --out"
        ) from None


def check_device(device: str) -> None:
    """Refuse a device this torch cannot use, before anything is loaded."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {device!r} is not a torch device; expected cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if torch.version.cuda is None and not getattr(torch.version, "hip", None):
            raise InputError(
                f"--device {device!r}: this torch ({torch.__version__}) is a CPU build without CUDA; pass "
                "--device cpu, or install a CUDA build of torch (see the README)"
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {device!r}: no CUDA device is visible; pass --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise InputError(f"--device {device!r}: only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1})")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {device!r}: MPS is not available here; pass --device cpu")
    elif parsed.type != "cpu":
        raise InputError(f"--device {device!r} is not supported; expected cpu, cuda, cuda:N or mps")


def load_pipeline(model: str, dtype: str, device: str, cpu_offload: bool, progress: bool = True):
    """The pipeline at ``model`` (a local folder; nothing is downloaded), in ``dtype`` on ``device``.

    Without ``progress`` the loading bars of diffusers and transformers are hidden too.
    """
    from .transfer import loading_bars
    import torch

    from diffusers import DiffusionPipeline

    torch_dtype = getattr(torch, dtype)
    try:
        # Newer diffusers rename torch_dtype to dtype and warn; older ones lack dtype.
        with warnings.catch_warnings(), loading_bars(progress):
            warnings.simplefilter("ignore", FutureWarning)
            # A folder never reaches the network; a hub id is downloaded (refused earlier when offline).
            pipe = DiffusionPipeline.from_pretrained(
                model, torch_dtype=torch_dtype, local_files_only=not is_hub_id(model)
            )
    except Exception as error:
        hint = "; check the id and your network, or download it and pass the folder" if is_hub_id(model) else ""
        raise InputError(
            f"cannot load the pipeline in {model!r}: {type(error).__name__}: {error}{hint}{tiny_model_hint(model)}"
        ) from None
    from .transfer import UnsupportedPipelineError, check_pipeline

    try:
        check_pipeline(pipe)
    except UnsupportedPipelineError as error:
        raise InputError(str(error)) from None
    # motion_transfer draws its own bar; a baseline run through this pipeline (eval sweeps) shows none.
    pipe.set_progress_bar_config(disable=True)
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe
