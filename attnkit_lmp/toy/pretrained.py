"""Loads the trained toy pipeline bundled with the package (or any toy pipeline folder)."""

from __future__ import annotations

from pathlib import Path

BUNDLED_PIPELINE = Path(__file__).parent / "pretrained"
# The Wan 2.1-architecture toy, trained by the same script: the same plugins measured on self- and cross-attention.
BUNDLED_WAN_PIPELINE = Path(__file__).parent / "pretrained_wan"
RETRAIN_HINT = (
    "Retrain it with `python -m attnkit_lmp.toy train --out runs/toy --steps 12000 --seed 0{options}` (the"
    " recipe and its options are in docs/toy-world.md) and load `runs/toy/pipeline`, or copy that folder to"
    " {bundled}."
)
_WAN_OPTIONS = " --architecture wan --num-frames 9"
_REQUIRED_FILES = (
    "model_index.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    "tokenizer/tokenizer.json",
)


class ToyModelMissingError(FileNotFoundError):
    """The toy pipeline folder is missing files or cannot be loaded."""


def load_toy_pipeline(path: str | Path | None = None, dtype=None):
    """Load a toy pipeline from ``path`` (default: the bundled trained one, a ``CogVideoXPipeline``).

    The stock class the folder's ``model_index.json`` names is loaded: ``CogVideoXPipeline``,
    ``CogVideoXImageToVideoPipeline`` or ``WanPipeline``, as the toy was trained (``--architecture``).
    Raises ``ToyModelMissingError`` naming the missing or unreadable part and how to retrain.
    """
    from diffusers import DiffusionPipeline

    folder = Path(path) if path is not None else BUNDLED_PIPELINE
    wan = folder.resolve() == BUNDLED_WAN_PIPELINE.resolve()
    hint = RETRAIN_HINT.format(
        options=_WAN_OPTIONS if wan else "", bundled=BUNDLED_WAN_PIPELINE if wan else BUNDLED_PIPELINE
    )
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ToyModelMissingError(f"toy pipeline at {folder} is missing {', '.join(missing)}. {hint}")
    try:
        pipeline = DiffusionPipeline.from_pretrained(folder, **({"torch_dtype": dtype} if dtype else {}))
    except Exception as error:  # safetensors/json/config errors all mean the same thing here
        raise ToyModelMissingError(
            f"toy pipeline at {folder} cannot be loaded ({type(error).__name__}: {error}). {hint}"
        ) from error
    return pipeline
