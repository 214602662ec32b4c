"""Synthetic videos whose motion is known exactly, to check trackers and motion fidelity against it.

`textured_translation` moves a smooth random texture by given per-frame displacements (sub-pixel
steps allowed, bilinear resampling); `moving_square` draws one coloured square on a plain background,
like the toy world does. Both return uint8 (T, H, W, 3) frames.
"""

from __future__ import annotations

import numpy as np


def constant_motion(num_frames: int, velocity: tuple[float, float]) -> np.ndarray:
    """(num_frames - 1, 2) per-step displacements, all equal to ``velocity`` (x, y) pixels per frame."""
    return np.tile(np.asarray(velocity, dtype=np.float64), (num_frames - 1, 1))


def circular_motion(num_frames: int, speed: float, turns: float = 1.0) -> np.ndarray:
    """(num_frames - 1, 2) steps of ``speed`` pixels whose direction turns ``turns`` full circles.

    Over whole turns the directions average to zero: a motion unrelated to any constant direction.
    """
    angles = 2 * np.pi * turns * np.arange(num_frames - 1) / (num_frames - 1)
    return speed * np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def smooth_texture(height: int, width: int, seed: int = 0, blur_sigma: float = 2.0) -> np.ndarray:
    """A (height, width, 3) uint8 random texture smoothed over a few pixels, so optical flow can follow it."""
    cv2 = _import_cv2()
    noise = np.random.default_rng(seed).uniform(0, 255, size=(height, width, 3)).astype(np.float32)
    smoothed = cv2.GaussianBlur(noise, (0, 0), blur_sigma)
    # Blurring pulls values towards the mean; stretch the contrast back to the full range.
    low, high = smoothed.min(), smoothed.max()
    return ((smoothed - low) / max(high - low, 1e-6) * 255).round().astype(np.uint8)


def textured_translation(
    steps: np.ndarray, height: int = 64, width: int = 64, seed: int = 0, blur_sigma: float = 2.0
) -> np.ndarray:
    """Frames (len(steps) + 1, H, W, 3) of a texture whose content moves by steps[t] (x, y) after frame t."""
    cv2 = _import_cv2()
    steps = np.asarray(steps, dtype=np.float64).reshape(-1, 2)
    offsets = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    # Texture large enough that the visible window never leaves it, so no border ever shows.
    margin = int(np.ceil(np.abs(offsets).max())) + 4
    texture = smooth_texture(height + 2 * margin, width + 2 * margin, seed, blur_sigma)
    frames = []
    for offset_x, offset_y in offsets:
        # Content at texture point p appears at frame point p - margin + offset.
        shift = np.float32([[1, 0, offset_x - margin], [0, 1, offset_y - margin]])
        frames.append(cv2.warpAffine(texture, shift, (width, height), flags=cv2.INTER_LINEAR))
    return np.stack(frames)


def moving_square(
    steps: np.ndarray,
    height: int = 64,
    width: int = 64,
    side: int = 12,
    start: tuple[float, float] | None = None,
    colour: tuple[int, int, int] = (230, 60, 40),
    background: tuple[int, int, int] = (20, 20, 30),
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) of a square moving by ``steps`` (rounded to whole pixels) and its masks (T, H, W).

    ``start`` is the square's top-left corner (x, y) in the first frame; by default it is centred.
    """
    steps = np.asarray(steps, dtype=np.float64).reshape(-1, 2)
    if start is None:
        start = ((width - side) / 2, (height - side) / 2)
    corners = np.round(
        np.asarray(start) + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    ).astype(int)
    frames = np.empty((len(corners), height, width, 3), dtype=np.uint8)
    frames[:] = background
    masks = np.zeros((len(corners), height, width), dtype=bool)
    for t, (left, top) in enumerate(corners):
        masks[t, max(top, 0) : max(top + side, 0), max(left, 0) : max(left + side, 0)] = True
    frames[masks] = colour
    return frames, masks


def _import_cv2():
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            f"synthetic textures need OpenCV ({error}); install it with `pip install opencv-python-headless`"
        ) from error
    return cv2
