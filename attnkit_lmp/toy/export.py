"""Writes toy-world clips as real data: mp4 files, and a folder laid out like DAVIS with a prompts file.

DAVIS-like layout written by :func:`write_davis_layout`::

    ROOT/JPEGImages/<name>/00000.jpg ...   frames (JPEG, quality 95)
    ROOT/Annotations/<name>/00000.png ...  masks (palette PNG: 0 background, 1 object), as in DAVIS
    ROOT/prompts.json                      {"videos": {name: {subject, prompt, sub, back}}}
    ROOT/ground_truth.json                 name -> clip spec, centroids (x, y) per frame, world config

The prompts file follows the schema of docs/evaluation.md (``attnkit_lmp.eval.datasets.load_prompts``)
and the paper's three splits: Ori (the clip's own prompt), Sub (the subject changed to another colour
*and* shape) and Back (the background changed). ``attnkit_lmp.eval.datasets.DavisDataset(ROOT)``
reads the folder (it accepts the layout without the resolution level).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from attnkit_lmp.toy.world import Clip, prompt_for, substitute_background, substitute_subject

# DAVIS annotation palette: index 0 black (background), 1 red (first object).
_DAVIS_PALETTE = [0, 0, 0, 128, 0, 0] + [0, 0, 0] * 254


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Write frames (T,H,W,3 uint8, or float in [0,1]) as a near-lossless H.264 mp4; returns the path.

    Odd sides are refused rather than cropped, since an exported clip must keep every pixel of its
    ground truth."""
    from attnkit_lmp.video_io import write_mp4 as write_video_mp4

    height, width = np.shape(frames)[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"mp4 (yuv420p) needs even frame sides, got {height}x{width}: crop or pad the frames.")
    return write_video_mp4(path, frames, fps=fps, crf=10)


def read_mp4(path: str | Path) -> np.ndarray:
    """Frames (T,H,W,3 uint8) of a video file."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def split_prompts(clip: Clip) -> dict:
    """The clip's prompts-file entry: subject, prompt, and the ``sub`` and ``back`` variants.

    Follows the prompts-file schema of docs/evaluation.md: ``sub`` changes colour *and* shape (drawn
    from the clip's own random stream, so it is reproducible), ``back`` changes the background.
    """
    spec = clip.spec
    other_colour, other_shape = substitute_subject(spec)
    other_background = substitute_background(spec, clip.config)
    return {
        "subject": spec.subject,
        "prompt": spec.prompt,
        "sub": {
            "subject": f"{other_colour} {other_shape}",
            "prompt": prompt_for(other_colour, other_shape, spec.background),
        },
        "back": {"prompt": prompt_for(spec.colour, spec.shape, other_background)},
    }


def write_davis_layout(clips: list[Clip], root: str | Path, write_videos: bool = False) -> Path:
    """Write ``clips`` under ``root`` in the DAVIS layout (see module docstring); returns ``root``.

    With ``write_videos`` each clip is also written as ``ROOT/videos/<name>.mp4``.
    """
    root = Path(root)
    names = [clip.name for clip in clips]
    if len(set(names)) != len(names):
        raise ValueError(
            f"clip names repeat ({sorted(n for n in names if names.count(n) > 1)}); use distinct seeds."
        )
    prompts, ground_truth = {}, {}
    for clip in clips:
        image_folder = root / "JPEGImages" / clip.name
        mask_folder = root / "Annotations" / clip.name
        image_folder.mkdir(parents=True, exist_ok=True)
        mask_folder.mkdir(parents=True, exist_ok=True)
        for index, (frame, mask) in enumerate(zip(clip.frames, clip.masks)):
            Image.fromarray(frame).save(image_folder / f"{index:05d}.jpg", quality=95)
            annotation = Image.fromarray(mask.astype(np.uint8), mode="P")
            annotation.putpalette(_DAVIS_PALETTE)
            annotation.save(mask_folder / f"{index:05d}.png")
        if write_videos:
            write_mp4(clip.frames, root / "videos" / f"{clip.name}.mp4")
        prompts[clip.name] = split_prompts(clip)
        ground_truth[clip.name] = {
            "spec": clip.spec.to_dict(),
            "world": asdict(clip.config),
            "centroids": np.round(clip.centroids, 4).tolist(),
        }
    (root / "prompts.json").write_text(json.dumps({"videos": prompts}, indent=1) + "\n")
    (root / "ground_truth.json").write_text(json.dumps(ground_truth, indent=1) + "\n")
    return root


def read_davis_clip(root: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T,H,W,3 uint8) and masks (T,H,W bool) of clip ``name`` from a DAVIS-layout folder."""
    root = Path(root)
    image_paths = sorted((root / "JPEGImages" / name).glob("*.jpg"))
    mask_paths = sorted((root / "Annotations" / name).glob("*.png"))
    if not image_paths:
        raise FileNotFoundError(
            f"no frames for {name!r} under {root / 'JPEGImages'}; is {root} a DAVIS layout?"
        )
    frames = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in image_paths])
    masks = np.stack([np.asarray(Image.open(path)) > 0 for path in mask_paths])
    return frames, masks
