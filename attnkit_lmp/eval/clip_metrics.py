"""The paper's CLIP-based video metrics: Align (CLIP score), Cons. (frame consistency), Pick. (PickScore).

Definitions, per video of T frames and its prompt (embeddings are L2-normalised projections):

* **Align** = mean over frames of max(100 * cos(image_t, text), 0). The x100 and the clamp at 0 are
  the CLIP-score convention of torchmetrics' ``CLIPScore``; a matching prompt scores ~20-35 with
  CLIP ViT-L/14, and the clamp only bites on frames CLIP finds unrelated to the prompt.
* **Cons.** = mean over t of cos(image_t, image_{t+1}) with the same CLIP model (no x100, no clamp).
* **Pick.** = mean over frames of exp(logit_scale) * cos(image_t, text) with the PickScore model, as its
  authors score an image (exp(logit_scale) is ~100 for PickScore_v1); no clamp.

Models are transformers ``CLIPModel`` folders on local disk, loaded once per `ClipEmbedder` and run
batched over frames. Prompts longer than CLIP's 77 tokens are truncated (the paper's dense prompts
usually are). Nothing is downloaded: a missing folder raises `MetricModelNotFoundError` saying what
to fetch and where to pass it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CLIP_MODEL_NAME = "openai/clip-vit-large-patch14"
PICKSCORE_MODEL_NAME = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR_NAME = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
ALIGN_SCALE = 100.0


class MetricModelNotFoundError(FileNotFoundError):
    """A metric model is not on local disk; the message names what to download and how to pass it."""


def download_help(role: str, model_name: str, processor_name: str | None = None) -> str:
    """How to fetch a metric model (and its processor) on a machine with internet and pass it here."""
    lines = [
        f"{role} needs {model_name} on local disk. Where there is internet, run",
        f"  huggingface-cli download {model_name} --local-dir /models/{model_name.split('/')[-1]}",
    ]
    if processor_name is not None:
        lines.append(
            f"  huggingface-cli download {processor_name} --local-dir /models/{processor_name.split('/')[-1]}"
            "  (its processor)"
        )
    lines.append("then copy the folder(s) here and pass their paths, e.g.")
    if processor_name is None:
        lines.append(f"  VideoTextMetrics.from_paths(clip_model='/models/{model_name.split('/')[-1]}')")
    else:
        lines.append(
            f"  VideoTextMetrics.from_paths(..., pickscore_model='/models/{model_name.split('/')[-1]}', "
            f"pickscore_processor='/models/{processor_name.split('/')[-1]}')"
        )
    return "\n".join(lines)


_CONFIG_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "tokenizer_config.json")


def _check_model_folder(path: str | Path, what: str, help_text: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MetricModelNotFoundError(f"no {what} folder at '{path}'.\n{help_text}")
    if not any((path / name).is_file() for name in _CONFIG_FILES):
        raise MetricModelNotFoundError(
            f"'{path}' is not a transformers {what} folder (it has none of {', '.join(_CONFIG_FILES)}).\n"
            f"{help_text}"
        )
    return path


class ClipEmbedder:
    """A CLIP model and its processor, loaded once, that embed frames (in batches) and prompts.

    ``processor_path`` defaults to ``model_path`` (PickScore keeps its processor in another repository).
    """

    def __init__(
        self,
        model_path: str | Path,
        processor_path: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        role: str = "Align and Cons.",
        download_hint: str | None = None,
    ) -> None:
        from transformers import AutoProcessor, CLIPModel

        help_text = download_hint or download_help(role, CLIP_MODEL_NAME)
        model_path = _check_model_folder(model_path, "CLIP model", help_text)
        processor_path = _check_model_folder(processor_path or model_path, "CLIP processor", help_text)
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of frames, got {batch_size}")
        self.model = CLIPModel.from_pretrained(model_path).to(device=device, dtype=dtype).eval()
        self.processor = AutoProcessor.from_pretrained(processor_path)
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_text_tokens = self.model.config.text_config.max_position_embeddings

    @property
    def logit_scale(self) -> float:
        """exp(logit_scale): the temperature CLIP multiplies cosines by (~100 once trained)."""
        return float(self.model.logit_scale.detach().float().exp())

    @torch.inference_mode()
    def embed_frames(self, frames: np.ndarray) -> torch.Tensor:
        """(T, D) float32 unit-norm image embeddings of uint8 (T, H, W, 3) RGB frames."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(
                f"frames have shape {frames.shape} and dtype {frames.dtype}, expected uint8 "
                "(num_frames >= 1, height, width, 3) RGB"
            )
        embeddings = []
        for start in range(0, len(frames), self.batch_size):
            batch = list(frames[start : start + self.batch_size])
            pixel_values = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            features = self.model.get_image_features(pixel_values=pixel_values.to(self.device, self.dtype))
            embeddings.append(_pooled(features).float())
        return torch.nn.functional.normalize(torch.cat(embeddings), dim=-1).cpu()

    @torch.inference_mode()
    def embed_text(self, prompt: str) -> torch.Tensor:
        """(D,) float32 unit-norm text embedding of ``prompt``, truncated to CLIP's token limit."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        tokens = self.processor(
            text=[prompt], padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        features = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
        )
        return torch.nn.functional.normalize(_pooled(features).float(), dim=-1)[0].cpu()


def _pooled(features) -> torch.Tensor:
    # transformers < 5 returns the projected embeddings; 5 returns an output whose pooler_output they are.
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def clip_scores(image_embeddings: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """(T,) per-frame CLIP scores max(100 * cos, 0) from unit-norm embeddings (T, D) and (D,)."""
    return (ALIGN_SCALE * image_embeddings @ text_embedding).clamp(min=0)


def consecutive_cosines(image_embeddings: torch.Tensor) -> torch.Tensor:
    """(T - 1,) cosines between consecutive unit-norm frame embeddings (T, D)."""
    if len(image_embeddings) < 2:
        raise ValueError(
            f"frame consistency needs at least 2 frames, got {len(image_embeddings)}; "
            "it compares frame t with t + 1"
        )
    return (image_embeddings[1:] * image_embeddings[:-1]).sum(dim=-1)


def pick_scores(
    image_embeddings: torch.Tensor, text_embedding: torch.Tensor, logit_scale: float
) -> torch.Tensor:
    """(T,) per-frame PickScores exp(logit_scale) * cos of unit-norm embeddings; pass exp(logit_scale)."""
    return logit_scale * (image_embeddings @ text_embedding)


class VideoTextMetrics:
    """Align, Cons. and (when a PickScore model is given) Pick. of videos against prompts, models loaded once.

    Build with `from_paths`; call `evaluate(frames, prompt)` per video. Frame embeddings are computed
    once per model per video and shared by the metrics that need them.
    """

    def __init__(self, clip: ClipEmbedder, pickscore: ClipEmbedder | None = None) -> None:
        self.clip = clip
        self.pickscore = pickscore

    @classmethod
    def from_paths(
        cls,
        clip_model: str | Path,
        pickscore_model: str | Path | None = None,
        pickscore_processor: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
    ) -> VideoTextMetrics:
        """Load CLIP (``openai/clip-vit-large-patch14``) and optionally PickScore from local folders.

        PickScore_v1 ships without a processor: pass ``pickscore_processor`` =
        a local copy of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``.
        """
        clip = ClipEmbedder(clip_model, device=device, dtype=dtype, batch_size=batch_size)
        pickscore = None
        if pickscore_model is not None:
            pickscore_help = download_help("Pick.", PICKSCORE_MODEL_NAME, PICKSCORE_PROCESSOR_NAME)
            if pickscore_processor is None:
                raise MetricModelNotFoundError(
                    "pickscore_processor is missing: PickScore_v1 has no processor of its own.\n"
                    + pickscore_help
                )
            pickscore = ClipEmbedder(
                pickscore_model,
                pickscore_processor,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                role="Pick.",
                download_hint=pickscore_help,
            )
        return cls(clip, pickscore)

    def evaluate(self, frames: np.ndarray, prompt: str) -> dict[str, float]:
        """{"align", "consistency"[, "pick"]} of uint8 (T, H, W, 3) frames against ``prompt``."""
        clip_frames = self.clip.embed_frames(frames)
        results = {
            "align": float(clip_scores(clip_frames, self.clip.embed_text(prompt)).mean()),
            "consistency": float(consecutive_cosines(clip_frames).mean()),
        }
        if self.pickscore is not None:
            pick_frames = self.pickscore.embed_frames(frames)
            pick_text = self.pickscore.embed_text(prompt)
            results["pick"] = float(pick_scores(pick_frames, pick_text, self.pickscore.logit_scale).mean())
        return results
