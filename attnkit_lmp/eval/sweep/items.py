"""One process's work on one item: generate it, score it, write its video, and return its record."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...methods import Method
from ..datasets import DavisDataset, EvalItem
from ..motion_fidelity import motion_fidelity
from .plan import SweepItem
from .settings import SweepError, SweepSettings, method_config


class ItemRunner:
    """Generates and scores items with models loaded once; caches each video's reference and its tracks."""

    def __init__(
        self,
        settings: SweepSettings,
        pipe,
        base_config,
        dataset: DavisDataset,
        tracker,
        text_metrics,
        pick_only,
    ):
        self.settings = settings
        self.pipe = pipe
        self.base_config = base_config
        self.dataset = dataset
        self.tracker = tracker
        self.text_metrics = text_metrics
        self.pick_only = pick_only
        self._reference_video: str | None = None
        self._reference: dict[str, Any] = {}
        self._configs: dict[str, Any] = {}

    def config_for(self, method: Method):
        if method.name not in self._configs:
            self._configs[method.name] = method_config(self.base_config, method)
        return self._configs[method.name]

    def reference(self, video: str, geometry) -> dict[str, Any]:
        """The reference as the model sees it (sampled, resized), its tracks and what the extra metrics need of
        it; cached per video."""
        if self._reference_video == video:
            return self._reference
        import torch

        from attnkit_lmp.video_io import read_video, to_uint8

        loaded = self.dataset.load(video)
        model_view = read_video(
            loaded.frames,
            geometry.num_frames,
            geometry.height,
            geometry.width,
            frame_sampling=geometry.frame_sampling,
        )
        frames = to_uint8(model_view)
        masks = None
        if loaded.masks is not None:
            # The masks go through the same sampling and resizing as the frames, then back to booleans.
            as_video = torch.from_numpy(loaded.masks.astype(np.float32))[..., None]
            masks = (
                read_video(
                    as_video,
                    geometry.num_frames,
                    geometry.height,
                    geometry.width,
                    frame_sampling=geometry.frame_sampling,
                )[:, 0].numpy()
                > 0.5
            )
        if self.settings.tracker == "centroid" and masks is not None:
            tracks = self.tracker.track_masks(self._enlarged(masks))
        else:
            tracks = self.tracker.track(self._enlarged(frames), self.settings.grid_size)
        reference = {
            "model_view": model_view,
            "frames": frames,
            "tracks": tracks,
            "extra": [metrics.reference(frames) for metrics in self.settings.extra_metrics],
        }
        self._reference_video, self._reference = video, reference
        return reference

    def _enlarged(self, video: np.ndarray) -> np.ndarray:
        factor = self.settings.track_upscale
        if factor == 1:
            return video
        return np.ascontiguousarray(video.repeat(factor, axis=1).repeat(factor, axis=2))

    def generate(self, item: SweepItem, reference_view):
        """Frames ``(F, 3, H, W)`` in [0, 1] of the item's method; the seed fixes the initial noise."""
        import torch

        from attnkit_lmp.transfer import motion_transfer

        target = item.target
        config = self.config_for(item.method)
        generator = torch.Generator(device="cpu").manual_seed(item.seed)
        if item.method.kind == "lmp":
            frames = motion_transfer(
                self.pipe,
                reference=reference_view,
                reference_prompt=target.reference_prompt,
                reference_subject=target.reference_subject,
                prompt=target.prompt,
                subject=target.subject,
                config=config,
                generator=generator,
                progress=False,
                check_finite=True,
            )
        else:
            frames = plain_generation(self.pipe, target, config, generator)
        if not torch.isfinite(frames).all():
            raise FloatingPointError(
                "the generated video holds NaN or inf (the unmodified pipeline made it: check "
                "--guidance-scale and the config)"
            )
        return frames

    def score(self, item: SweepItem, frames: np.ndarray, reference: dict[str, Any]) -> dict[str, Any]:
        """MF always; Align/Cons./Pick. when their models were given; the extra metrics of the settings."""
        generated = self.tracker.track(self._enlarged(frames), self.settings.grid_size)
        use_visibility = self.settings.tracker != "cotracker"  # DMT scores CoTracker tracks through occlusion
        fidelity = motion_fidelity(
            generated.tracks,
            reference["tracks"].tracks,
            generated_visible=generated.visible if use_visibility else None,
            reference_visible=reference["tracks"].visible if use_visibility else None,
            min_displacement=self.settings.min_displacement,
        )
        metrics: dict[str, float] = {"motion_fidelity": fidelity.score}
        if self.text_metrics is not None:
            metrics.update(self.text_metrics.evaluate(frames, item.target.prompt))
        elif self.pick_only is not None:
            from ..clip_metrics import pick_scores

            scores = pick_scores(
                self.pick_only.embed_frames(frames),
                self.pick_only.embed_text(item.target.prompt),
                self.pick_only.logit_scale,
            )
            metrics["pick"] = float(scores.mean())
        for extra, reference_state in zip(self.settings.extra_metrics, reference["extra"]):
            metrics.update(extra.score(frames, reference_state, item.target.subject))
        # NaN (e.g. no object found) is stored as null: JSON lines stay standard JSON.
        metrics = {
            name: None if value is None or np.isnan(value) else float(value)
            for name, value in metrics.items()
        }
        return {"metrics": metrics, "motion_fidelity": fidelity.to_dict()}

    def run(self, item: SweepItem, out: Path, rank: int) -> dict[str, Any]:
        """Generate, score and save one item; returns its record (not yet appended)."""
        from attnkit_lmp.video_io import to_uint8

        started = time.perf_counter()
        geometry = self.config_for(item.method)
        reference = self.reference(item.target.video, geometry)
        generation_started = time.perf_counter()
        try:
            frames = self.generate(item, reference["model_view"])
        except FloatingPointError as error:  # attnkit's NonFiniteError and motion_transfer's are ones too
            raise SweepError(
                f"item '{item.key}': {error}. Nothing was written for it; fix the settings and rerun"
            ) from error
        generation_seconds = time.perf_counter() - generation_started
        generated = to_uint8(frames)
        scores = self.score(item, generated, reference)
        write_mp4(out / item.video_path, generated, fps=geometry.fps)
        target = item.target
        return {
            "key": item.key,
            "video": target.video,
            "split": target.split,
            "method": item.method.name,
            "seed": item.seed,
            "prompt": target.prompt,
            "subject": target.subject,
            "reference_prompt": target.reference_prompt,
            "reference_subject": target.reference_subject,
            "method_kind": item.method.kind,
            "method_config_changes": item.method.config_changes,
            **scores,
            "video_path": item.video_path,
            "seconds": {"generation": generation_seconds, "item": time.perf_counter() - started},
            "rank": rank,
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Write uint8 (T, H, W, 3) frames as an mp4, atomically; frames under 128 pixels are enlarged by whole
    pixels so they can be seen. The results line that points at this video is written next: the atomic
    write has it on disk first."""
    from attnkit_lmp.video_io import write_mp4 as write_video_mp4

    return write_video_mp4(path, frames, fps=fps, upscale=max(1, 128 // max(frames.shape[1:3])))


def plain_generation(pipe, target: EvalItem, config, generator):
    """The baseline: the unmodified pipeline from the same first noise draw ``motion_transfer`` makes."""
    from attnkit_lmp.transfer import baseline_generation

    return baseline_generation(pipe, target.prompt, config, generator)
