"""A local vision-language model answering one instruction about a few images, loaded by path only.

The model is any transformers image-text-to-text checkpoint with a chat template (Qwen2-VL,
Qwen2.5-VL, LLaVA, Idefics3/SmolVLM, ...); nothing is downloaded.

``attnkit-lmp annotate`` asks it about each video's frames (:mod:`.annotate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

RECOMMENDED_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_MAX_NEW_TOKENS = 384
DTYPES = {
    "auto": "auto",
    "float32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


class AnnotationModelNotFoundError(FileNotFoundError):
    """The vision-language model is not on local disk; the message names what to download and how to pass it."""


class AnnotationModelError(ValueError):
    """The folder holds a model that cannot annotate (not image-text-to-text, no chat template)."""


def model_help(path: str | Path) -> str:
    """What to download, where there is internet, and how to pass it to ``attnkit-lmp annotate``."""
    folder = f"/models/{RECOMMENDED_MODEL.split('/')[-1]}"
    return (
        f"annotate needs an instruction-tuned image-text-to-text model on local disk, e.g. {RECOMMENDED_MODEL}\n"
        "(any Qwen2-VL / LLaVA-style transformers checkpoint with a chat template works). "
        "Where there is internet, run\n"
        f"  huggingface-cli download {RECOMMENDED_MODEL} --local-dir {folder}\n"
        f"then copy the folder here and pass it instead of '{path}':\n"
        f"  attnkit-lmp annotate --dataset DIR --model {folder} --out prompts.yaml"
    )


def check_model_folder(path: str | Path) -> Path:
    """``path`` as a Path if it is a folder with a transformers config; raises AnnotationModelNotFoundError."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise AnnotationModelNotFoundError(f"no vision-language model folder at '{folder}'.\n{model_help(folder)}")
    if not (folder / "config.json").is_file():
        raise AnnotationModelNotFoundError(
            f"'{folder}' is not a transformers model folder (it has no config.json).\n{model_help(folder)}"
        )
    return folder


class VisionLanguageModel:
    """A local image-text-to-text model and its processor, answering one instruction about a few images."""

    def __init__(self, model, processor, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        device: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> VisionLanguageModel:
        """Load model and processor from the local folder ``path`` (nothing is downloaded).

        ``dtype`` is one of `DTYPES` (``auto``: as the checkpoint is stored); ``device`` defaults to
        CUDA when available.
        """
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        folder = check_model_folder(path)
        if dtype not in DTYPES:
            raise AnnotationModelError(f"dtype {dtype!r} is unknown; expected one of {', '.join(DTYPES)}")
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise AnnotationModelError(
                f"cannot read the model config in '{folder}': {error}\n{model_help(folder)}"
            ) from None
        if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            raise AnnotationModelError(
                f"'{folder}' holds a '{config.model_type}' model, not an image-text-to-text (vision-language) "
                f"model that transformers can load with AutoModelForImageTextToText.\n{model_help(folder)}"
            )
        torch_dtype = "auto" if DTYPES[dtype] == "auto" else getattr(torch, DTYPES[dtype])
        # transformers 4.56 renamed torch_dtype to dtype.
        major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
        dtype_keyword = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        try:
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(
                folder, local_files_only=True, **{dtype_keyword: torch_dtype}
            )
        except OSError as error:
            raise AnnotationModelNotFoundError(
                f"cannot load the model in '{folder}': {error}\n{model_help(folder)}"
            ) from None
        except ImportError as error:
            # transformers 5 builds Qwen2-VL-style processors with a video processor that needs torchvision.
            raise AnnotationModelError(
                f"loading the model in '{folder}' needs a library that is not installed: "
                f"{' '.join(str(error).split())}\nInstall it, e.g. `pip install torchvision` (the build that "
                "matches your torch; on a CPU-only machine from https://download.pytorch.org/whl/cpu)."
            ) from None
        if not getattr(processor, "chat_template", None):
            raise AnnotationModelError(
                f"the processor in '{folder}' has no chat template, so there is no way to ask it a question; "
                f"use an instruction-tuned (chat) checkpoint.\n{model_help(folder)}"
            )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device).eval(), processor, max_new_tokens=max_new_tokens)

    def answer(self, images: Sequence, instruction: str) -> str:
        """The model's greedy answer to ``instruction`` about ``images`` (PIL images, in order)."""
        import torch

        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": instruction}]
        # Render the chat text first, then let the processor expand the image placeholders: this works on
        # every transformers version that has AutoModelForImageTextToText.
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[text], images=list(images), return_tensors="pt")
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()
