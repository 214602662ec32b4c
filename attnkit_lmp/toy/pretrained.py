"""Loads the trained toy pipeline bundled with the package (or any toy pipeline folder)."""

from __future__ import annotations

from pathlib import Path

BUNDLED_PIPELINE = Path(__file__).parent / "pretrained"
# The Wan 2.1-architecture toy, trained by the same script: the same plugins measured on self- and cross-attention.
BUNDLED_WAN_PIPELINE = Path(__file__).parent / "pretrained_wan"
# Both hints name the script that trains (or continues) the committed v2 runs in training/<arch>-v2.
RETRAIN_HINT = (
    "Train it with `bash scripts/train-toy.sh` (it continues the run committed in a checkout's"
    " training/cogvideox-v2; docs/toy-world.md) and load training/cogvideox-v2/pipeline, or copy that"
    " folder to {bundled}."
)
WAN_RETRAIN_HINT = (
    "Train a Wan toy with `ARCH=wan bash scripts/train-toy.sh` (the second world's recipe; docs/toy-world.md)"
    " and load training/wan-v2/pipeline, or restore {bundled} from the repository."
)
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
    if folder.resolve() == BUNDLED_WAN_PIPELINE.resolve():
        hint = WAN_RETRAIN_HINT.format(bundled=BUNDLED_WAN_PIPELINE)
    else:
        hint = RETRAIN_HINT.format(bundled=BUNDLED_PIPELINE)
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
