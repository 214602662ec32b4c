"""Reading reference videos at the model's frame count and size; writing results (mp4, gif, side by side).

Reading (``read_video``): an mp4/webm/mov/avi (PyAV through imageio), a gif, a folder of image files
(sorted by name, numbers in names compared as numbers), or frames already in memory (a tensor or array,
``(F, 3, H, W)`` or ``(F, H, W, 3)``, uint8 or float in [0, 1]).

Frame sampling policy (``frame_sampling``), for a model that needs ``num_frames`` frames:

- ``"uniform"`` (default): ``num_frames`` indices evenly spaced from the first to the last frame, so the
  whole motion of the clip is transferred (a long clip is sped up, as motion transfer papers do);
- ``"first"``: the first ``num_frames`` consecutive frames (original speed, the clip's start only).

A clip with fewer than ``num_frames`` frames is an error (frames are never invented). Each frame is
resized so that it covers ``height x width`` with its aspect ratio kept, then centre-cropped
(bilinear, antialiased). Grayscale frames become RGB and an alpha channel is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
GIF_SUFFIXES = (".gif",)


class VideoReadError(ValueError):
    """A reference video cannot be used: unreadable, too short, or of an unusable shape."""


def read_video(
    source,
    num_frames: int,
    height: int,
    width: int,
    frame_sampling: str = "uniform",
) -> torch.Tensor:
    """The reference as ``(num_frames, 3, height, width)`` float32 in [0, 1]; see the module docstring."""
    frames = load_frames(source)
    frames = sample_frames(frames, num_frames, frame_sampling, source)
    return resize_and_crop(frames, height, width)


def load_frames(source) -> torch.Tensor:
    """All frames of ``source`` as ``(F, 3, H, W)`` float32 in [0, 1], without resampling."""
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return _frames_from_array(torch.as_tensor(source), "the frames passed in")
    path = Path(source)
    if not path.exists():
        raise VideoReadError(
            f"reference video {str(path)!r} does not exist; pass a video file, a gif or a folder of frames"
        )
    if path.is_dir():
        return _read_frame_folder(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES + GIF_SUFFIXES + IMAGE_SUFFIXES:
        raise VideoReadError(
            f"reference video {str(path)!r} has suffix {suffix!r}; expected a video "
            f"({', '.join(VIDEO_SUFFIXES + GIF_SUFFIXES)}) or a folder of frames"
        )
    import imageio.v3 as iio

    try:
        if suffix in VIDEO_SUFFIXES:
            array = iio.imread(path, plugin="pyav", index=None)
        else:
            array = iio.imread(path, index=None)
    except Exception as error:
        raise VideoReadError(
            f"cannot read reference video {str(path)!r}: {type(error).__name__}: {error}. "
            "Check that the file is a complete, uncorrupted video"
        ) from error
    array = np.asarray(array)
    if suffix in IMAGE_SUFFIXES:  # a single picture: one frame (too short for any video model)
        array = array[None] if array.ndim == 3 else array[None, ..., None]
    elif array.ndim == 3:  # a stack of grayscale frames
        array = array[..., None]
    return _frames_from_array(torch.from_numpy(np.ascontiguousarray(array)), str(path))


def _read_frame_folder(folder: Path) -> torch.Tensor:
    import imageio.v3 as iio

    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise VideoReadError(
            f"folder {str(folder)!r} holds no image frames; expected files ending in "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    frames = []
    for file in files:
        try:
            image = np.asarray(iio.imread(file))
        except Exception as error:
            raise VideoReadError(
                f"cannot read frame {str(file)!r}: {type(error).__name__}: {error}"
            ) from error
        if image.ndim == 2:
            image = image[..., None]
        frames.append(image)
    shapes = {frame.shape[:2] for frame in frames}
    if len(shapes) > 1:
        raise VideoReadError(
            f"the frames in {str(folder)!r} have different sizes {sorted(shapes)}; "
            "all frames of a video must share one size"
        )
    return _frames_from_array(torch.from_numpy(np.stack(frames)), str(folder))


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _frames_from_array(array: torch.Tensor, where: str) -> torch.Tensor:
    """``(F, H, W, C)`` or ``(F, C, H, W)`` uint8/float -> ``(F, 3, H, W)`` float32 in [0, 1]."""
    if array.dim() != 4:
        raise VideoReadError(
            f"{where}: expected 4 dimensions (frames, channels, height, width) or (frames, height, width, "
            f"channels), got shape {tuple(array.shape)}"
        )
    if array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.permute(0, 3, 1, 2)
    elif array.shape[1] not in (1, 3, 4):
        raise VideoReadError(
            f"{where}: cannot find the colour channels in shape {tuple(array.shape)}; expected 1, 3 or 4 "
            "channels in dimension 1 or 3"
        )
    if array.dtype == torch.uint8:
        frames = array.float() / 255.0
    elif array.is_floating_point():
        frames = array.float()
        if not torch.isfinite(frames).all():
            # NaN fails every comparison, so the range check below would let it through to the VAE.
            bad = int((~torch.isfinite(frames)).sum())
            raise VideoReadError(
                f"{where}: {bad} value(s) are NaN or infinite; frames must be finite floats in [0, 1]"
            )
        if frames.numel() and (frames.min() < -1e-3 or frames.max() > 1 + 1e-3):
            raise VideoReadError(
                f"{where}: float frames must be in [0, 1], got values in "
                f"[{frames.min():.3g}, {frames.max():.3g}]"
            )
        frames = frames.clamp(0, 1)
    else:
        raise VideoReadError(
            f"{where}: frames of dtype {array.dtype} are not supported; use uint8 or float in [0, 1]"
        )
    channels = frames.shape[1]
    if channels == 1:
        frames = frames.expand(-1, 3, -1, -1)
    elif channels == 4:
        frames = frames[:, :3]
    if frames.shape[0] == 0 or frames.shape[2] < 2 or frames.shape[3] < 2:
        raise VideoReadError(
            f"{where}: {tuple(frames.shape)} holds no usable frames (need at least 2 x 2 pixels)"
        )
    return frames.contiguous()


def sample_frames(
    frames: torch.Tensor, num_frames: int, frame_sampling: str = "uniform", source="the video"
) -> torch.Tensor:
    """``num_frames`` of ``frames`` by the policy in the module docstring; too short is an error."""
    available = frames.shape[0]
    if available < num_frames:
        raise VideoReadError(
            f"reference video {_describe(source)} has {available} frames but the model generates "
            f"{num_frames}; "
            f"use a clip with at least {num_frames} frames (or lower num_frames in the config)"
        )
    if frame_sampling == "first":
        return frames[:num_frames]
    if frame_sampling == "uniform":
        index = torch.linspace(0, available - 1, num_frames).round().long()
        return frames[index]
    raise ValueError(f"frame_sampling={frame_sampling!r} is not one of ['uniform', 'first']")


def resize_and_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale ``(F, 3, h, w)`` frames to cover ``height x width`` (aspect kept), then centre-crop."""
    _, _, source_height, source_width = frames.shape
    if (source_height, source_width) == (height, width):
        return frames
    scale = max(height / source_height, width / source_width)
    resized_height = max(height, round(source_height * scale))
    resized_width = max(width, round(source_width * scale))
    resized = F.interpolate(
        frames, size=(resized_height, resized_width), mode="bilinear", antialias=True, align_corners=False
    )
    top = (resized_height - height) // 2
    left = (resized_width - width) // 2
    return resized[:, :, top : top + height, left : left + width].clamp(0, 1).contiguous()


def load_image(image, where: str = "image"):
    """An image-to-video first frame as a PIL image (from PIL or an image file) or a ``(3, H, W)`` float
    tensor in [0, 1]; anything else, or NaN/out-of-range pixels, is a :class:`VideoReadError` saying why."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                return opened.convert("RGB")
        except (OSError, ValueError) as error:
            raise VideoReadError(f"{where} {str(image)!r} is not a readable image file: {error}") from None
    if isinstance(image, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(image)
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 3 or tensor.shape[0] != 3:
            raise VideoReadError(
                f"{where} has shape {tuple(tensor.shape)}; expected (3, H, W) (channels first), or pass a PIL image"
            )
        return _frames_from_array(tensor[None], where)[0]
    raise VideoReadError(
        f"{where} is a {type(image).__name__}; pass a PIL image, an image file path, or a (3, H, W) tensor in [0, 1]"
    )


def cover_image(image, height: int, width: int):
    """``image`` (from :func:`load_image`) cropped like a reference frame: scaled to cover ``height x width``
    with its aspect kept, centre-cropped. A PIL image is only cropped to the aspect (the pipeline then
    resizes it), so an image of the right aspect reaches the pipeline untouched."""
    if isinstance(image, torch.Tensor):
        return resize_and_crop(image[None], height, width)[0]
    source_width, source_height = image.size
    if source_width * height == source_height * width:
        return image
    scale = max(height / source_height, width / source_width)
    crop_width, crop_height = round(width / scale), round(height / scale)
    left, top = (source_width - crop_width) // 2, (source_height - crop_height) // 2
    return image.crop((left, top, left + crop_width, top + crop_height))


def _describe(source) -> str:
    return f"{str(source)!r}" if isinstance(source, (str, os.PathLike)) else "(frames passed in)"


# --- writing --------------------------------------------------------------------------------------------


def to_uint8(frames, upscale: int = 1) -> np.ndarray:
    """Frames as ``(F, H * upscale, W * upscale, 3)`` uint8, enlarged by whole pixels (nearest neighbour).

    ``frames`` is a tensor or array, ``(F, 3, H, W)`` (the pipelines' layout) or ``(F, H, W, 3)``, in [0, 1]
    (each value becomes the nearest of 0..255, computed in float32, halves to even) or already uint8.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        array = (frames if frames.dtype == torch.uint8 else frames.float()).numpy()
    else:
        array = np.asarray(frames)
    if array.ndim == 4 and array.shape[1] == 3 and array.shape[-1] != 3:
        array = array.transpose(0, 2, 3, 1)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames have shape {array.shape}: expected (F, 3, H, W) or (F, H, W, 3).")
    if array.dtype != np.uint8:
        array = np.clip(array.astype(np.float32, copy=False), 0, 1)
        array = (array * 255).round().astype(np.uint8)
    if upscale > 1:
        array = array.repeat(upscale, axis=1).repeat(upscale, axis=2)
    return array


def write_video(path: str | Path, frames: torch.Tensor, fps: int = 8, upscale: int = 1) -> Path:
    """Write ``(F, 3, H, W)`` frames in [0, 1] to ``path`` (.mp4 with H.264, or .gif), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        return write_mp4(path, frames, fps=fps, upscale=upscale)
    if suffix != ".gif":
        raise ValueError(f"cannot write {str(path)!r}: use a .mp4 or .gif file name")
    import imageio.v3 as iio

    from attnkit.record.atomic import atomic_file

    with atomic_file(path, suffix=suffix) as temporary:
        iio.imwrite(temporary, to_uint8(frames, upscale), extension=suffix, duration=1000 / fps, loop=0)
    return path


def write_frames(folder: str | Path, frames) -> Path:
    """Write frames (any layout :func:`to_uint8` takes) losslessly as ``folder/00000.png, 00001.png, ...``
    at their own size; :func:`load_frames` reads the folder back exactly."""
    import imageio.v3 as iio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(to_uint8(frames)):
        iio.imwrite(folder / f"{index:05d}.png", frame)
    return folder


def write_mp4(path: str | Path, frames, fps: int = 8, upscale: int = 1, crf: int = 12) -> Path:
    """Write frames (any layout :func:`to_uint8` takes) as an H.264 mp4, atomically, creating the folder.

    An odd side loses its last pixel row or column, which yuv420p cannot hold. ``crf`` 12 is near-lossless,
    so the toy world's exact colours survive. PyAV directly: imageio's writer runs two full garbage
    collections per file, which cost more than a toy generation.
    """
    import av

    from attnkit.record.atomic import atomic_file

    video = to_uint8(frames, upscale)
    video = video[:, : video.shape[1] // 2 * 2, : video.shape[2] // 2 * 2]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix=".mp4") as temporary:
        with av.open(str(temporary), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in video:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
    return path


def side_by_side(left: torch.Tensor, right: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """Two videos ``(F, 3, H, W)`` next to each other (the left resized to the right's size), white gap."""
    if left.shape[0] != right.shape[0]:
        frames = min(left.shape[0], right.shape[0])
        left, right = left[:frames], right[:frames]
    left = resize_and_crop(left.float(), right.shape[2], right.shape[3])
    spacer = torch.ones(right.shape[0], 3, right.shape[2], gap, dtype=right.dtype, device=right.device)
    return torch.cat([left.to(right), spacer, right], dim=3)
