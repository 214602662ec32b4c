"""Point trackers that turn a video into the (N, T, 2) tracks motion fidelity compares.

Every tracker has one method, ``track(frames, grid_size, mask=None) -> TrackedPoints``: frames are
uint8 (T, H, W, 3) RGB; the result holds ``tracks`` (N, T, 2) float32 pixel positions (x, y), where
pixel (row i, column j) has its centre at (j, i), and ``visible`` (N, T) bool. With ``mask`` (H, W),
only the grid points inside it are tracked, as CoTracker's ``segm_mask`` does; DMT's ``use_mask``
passes `box_mask` of the reference's first-frame mask for both videos, so MF scores the foreground
only. Built in:

* `LucasKanadeTracker` — a grid of ``grid_size`` x ``grid_size`` points followed frame to frame by
  OpenCV's pyramidal Lucas-Kanade, with a forward-backward check for visibility. Needs nothing
  downloaded; the default when no CoTracker checkpoint is at hand.
* `CoTrackerTracker` — the paper's tracker (CoTracker, 55 x 55 grid), from a local checkpoint and a
  local copy of its code; torch.hub cannot download here.
* `CentroidTracker` — one tracklet, the centroid of a per-frame foreground mask: the toy world, whose
  videos hold one coloured shape, has ground-truth masks for references and a colour segmentation for
  generated videos.

`build_tracker(name, **options)` builds one by name, so a sweep can take the tracker from its config.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np


class TrackedPoints(NamedTuple):
    """Tracks of N points over T frames; unpacks as ``tracks, visible = tracker.track(...)``."""

    tracks: np.ndarray
    """(N, T, 2) float32 pixel positions (x, y)."""
    visible: np.ndarray
    """(N, T) bool; False where the tracker lost the point (its position is then not to be trusted)."""


class PointTracker(Protocol):
    """What motion fidelity needs of a tracker."""

    def track(self, frames: np.ndarray, grid_size: int, mask: np.ndarray | None = None) -> TrackedPoints:
        """Track a grid_size x grid_size grid of points of the first frame (those inside ``mask`` if given)."""
        ...


class TrackerUnavailableError(RuntimeError):
    """A tracker's model or code is not on this machine; the message says what to fetch and how to pass it."""


def grid_points(height: int, width: int, grid_size: int) -> np.ndarray:
    """(grid_size**2, 2) float32 points (x, y): centres of a grid_size x grid_size tiling, row by row."""
    if grid_size < 1:
        raise ValueError(f"grid_size must be at least 1, got {grid_size}")
    xs = (np.arange(grid_size) + 0.5) * width / grid_size - 0.5
    ys = (np.arange(grid_size) + 0.5) * height / grid_size - 0.5
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1).astype(np.float32)


def box_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the bounding box of a mask's foreground, as DMT's ``use_mask`` builds it.

    Inclusive of the box's last row and column (DMT's slice stops one short of them).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError(
            f"mask has shape {mask.shape} and {int(mask.sum())} foreground pixel(s); expected one (H, W) "
            "mask of the first frame with some foreground"
        )
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = np.zeros_like(mask)
    box[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1] = True
    return box


def points_in_mask(points: np.ndarray, mask: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """The (x, y) points whose nearest pixel is inside ``mask`` (H, W); all of them when mask is None."""
    if mask is None:
        return points
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (height, width):
        raise ValueError(f"mask has shape {mask.shape}, expected the frames' ({height}, {width})")
    columns = np.clip(np.rint(points[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.rint(points[:, 1]).astype(int), 0, height - 1)
    inside = points[mask[rows, columns]]
    if len(inside) == 0:
        raise ValueError(
            f"no point of the grid falls inside the mask ({int(mask.sum())} pixel(s)); "
            "raise grid_size or pass a larger mask (box_mask of the object)"
        )
    return inside


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Frames as a contiguous uint8 (T, H, W, 3) array, or a ValueError saying what was wrong."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames have shape {frames.shape}, expected (num_frames, height, width, 3) RGB")
    if frames.dtype != np.uint8:
        raise ValueError(
            f"frames have dtype {frames.dtype}, expected uint8 in [0, 255]; convert float frames in [0, 1] "
            "with (frames * 255).round().clip(0, 255).astype(np.uint8)"
        )
    if len(frames) == 0:
        raise ValueError("frames are empty: a video needs at least one frame to track")
    return np.ascontiguousarray(frames)


class LucasKanadeTracker:
    """Grid tracker on OpenCV's pyramidal Lucas-Kanade optical flow, chained frame to frame.

    A point is tracked from frame t to t + 1, then back; if either direction fails or the round trip
    lands more than ``max_forward_backward_error`` pixels from where it started, the point is lost:
    it stays invisible for the rest of the video and keeps its last position (chained LK cannot
    re-find a point, and a drifting guess would invent motion).
    """

    def __init__(
        self,
        window_size: int = 21,
        pyramid_levels: int = 3,
        max_forward_backward_error: float = 1.0,
        max_iterations: int = 30,
    ) -> None:
        if window_size < 3:
            raise ValueError(f"window_size must be at least 3 pixels, got {window_size}")
        self.window_size = window_size
        self.pyramid_levels = pyramid_levels
        self.max_forward_backward_error = max_forward_backward_error
        self.max_iterations = max_iterations

    def track(self, frames: np.ndarray, grid_size: int, mask: np.ndarray | None = None) -> TrackedPoints:
        cv2 = _import_cv2()
        frames = check_frames(frames)
        num_frames, height, width, _ = frames.shape
        start = points_in_mask(grid_points(height, width, grid_size), mask, height, width)
        tracks = np.empty((len(start), num_frames, 2), dtype=np.float32)
        visible = np.zeros((len(start), num_frames), dtype=bool)
        tracks[:, 0] = start
        visible[:, 0] = True
        lk_options = dict(
            winSize=(self.window_size, self.window_size),
            maxLevel=self.pyramid_levels,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.max_iterations, 0.01),
        )
        grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
        for t in range(num_frames - 1):
            tracks[:, t + 1] = tracks[:, t]
            alive = np.flatnonzero(visible[:, t])
            if len(alive) == 0:
                continue
            here = tracks[alive, t].reshape(-1, 1, 2)
            there, forward_ok, _ = cv2.calcOpticalFlowPyrLK(grey[t], grey[t + 1], here, None, **lk_options)
            back, backward_ok, _ = cv2.calcOpticalFlowPyrLK(grey[t + 1], grey[t], there, None, **lk_options)
            there = there.reshape(-1, 2)
            round_trip_error = np.linalg.norm(back.reshape(-1, 2) - here.reshape(-1, 2), axis=-1)
            inside = (
                (there[:, 0] >= -0.5)
                & (there[:, 0] <= width - 0.5)
                & (there[:, 1] >= -0.5)
                & (there[:, 1] <= height - 0.5)
            )
            kept = (
                forward_ok.ravel().astype(bool)
                & backward_ok.ravel().astype(bool)
                & (round_trip_error <= self.max_forward_backward_error)
                & inside
            )
            tracks[alive[kept], t + 1] = there[kept]
            visible[alive[kept], t + 1] = True
        return TrackedPoints(tracks, visible)


COTRACKER_DOWNLOAD_HELP = (
    "CoTracker cannot be downloaded from this process. On a machine with internet, fetch\n"
    "  - the weights: https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth\n"
    "  - the code:    git clone https://github.com/facebookresearch/co-tracker\n"
    "                 (or: pip install git+https://github.com/facebookresearch/co-tracker)\n"
    "then pass both paths:\n"
    "  CoTrackerTracker.from_checkpoint('/path/scaled_offline.pth', repo='/path/co-tracker')"
)


class CoTrackerTracker:
    """CoTracker behind the tracker interface: frames in, (N, T, 2) tracks and (N, T) visibility out.

    ``predictor`` is CoTracker's offline predictor, or anything called the same way:
    ``predictor(video (1, T, 3, H, W) float in [0, 255], grid_size=g[, segm_mask=(1, 1, H, W)]) ->
    (tracks (1, T, N, 2), visibility (1, T, N) or (1, T, N, 1))``. Use `from_checkpoint` to load the
    real one.
    """

    def __init__(self, predictor: Callable[..., Any], device: str = "cpu") -> None:
        self.predictor = predictor
        self.device = device

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        repo: str | Path | None = None,
        hub_entry: str = "cotracker3_offline",
        device: str = "cpu",
    ) -> CoTrackerTracker:
        """Load CoTracker weights from a local ``checkpoint`` file with the code of a local clone ``repo``.

        Without ``repo`` the code comes from an installed ``cotracker`` package. ``hub_entry`` names the
        model in the clone's hubconf.py (``cotracker3_offline`` for scaled_offline.pth).
        """
        import torch

        checkpoint = Path(checkpoint).expanduser()
        if not checkpoint.is_file():
            raise TrackerUnavailableError(
                f"no CoTracker checkpoint at '{checkpoint}'.\n{COTRACKER_DOWNLOAD_HELP}"
            )
        if repo is not None:
            repo = Path(repo).expanduser()
            if not (repo / "hubconf.py").is_file():
                raise TrackerUnavailableError(
                    f"'{repo}' is not a clone of the CoTracker repository (it has no hubconf.py).\n"
                    f"{COTRACKER_DOWNLOAD_HELP}"
                )
            predictor = torch.hub.load(str(repo), hub_entry, source="local", pretrained=False)
            state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
            # Training checkpoints wrap the weights; released ones are the bare state dict.
            state_dict = state_dict.get("model", state_dict)
            predictor.model.load_state_dict(state_dict)
        else:
            try:
                from cotracker.predictor import CoTrackerPredictor
            except ImportError as error:
                raise TrackerUnavailableError(
                    f"the CoTracker code is not importable ({error}); pass repo= a local clone.\n"
                    f"{COTRACKER_DOWNLOAD_HELP}"
                ) from error
            predictor = CoTrackerPredictor(checkpoint=str(checkpoint))
        if hasattr(predictor, "eval"):
            predictor = predictor.eval()
        if hasattr(predictor, "to"):
            predictor = predictor.to(device)
        return cls(predictor, device=device)

    def track(self, frames: np.ndarray, grid_size: int, mask: np.ndarray | None = None) -> TrackedPoints:
        import torch

        frames = check_frames(frames)
        num_frames, height, width, _ = frames.shape
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().to(self.device)
        options = {}
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (height, width):
                raise ValueError(f"mask has shape {mask.shape}, expected the frames' ({height}, {width})")
            # CoTracker keeps the grid points where the mask, resized to its own resolution, is non-zero.
            options["segm_mask"] = torch.from_numpy(mask).float()[None, None].to(self.device)
        with torch.inference_mode():
            tracks, visibility = self.predictor(video, grid_size=grid_size, **options)
        tracks = tracks.detach().float().cpu()
        visibility = visibility.detach().cpu()
        if visibility.ndim == 4 and visibility.shape[-1] == 1:
            visibility = visibility[..., 0]
        if tracks.ndim != 4 or tracks.shape[0] != 1 or tracks.shape[1] != num_frames or tracks.shape[-1] != 2:
            raise ValueError(
                f"CoTracker returned tracks of shape {tuple(tracks.shape)}, "
                f"expected (1, {num_frames}, N, 2); "
                "is the predictor an offline CoTracker predictor?"
            )
        if visibility.shape != tracks.shape[:3]:
            raise ValueError(
                f"CoTracker returned visibility of shape {tuple(visibility.shape)}, expected "
                f"{tuple(tracks.shape[:3])} to match its tracks"
            )
        # Released predictors threshold visibility themselves; raw model outputs are probabilities.
        visible = visibility if visibility.dtype == torch.bool else visibility > 0.5
        return TrackedPoints(
            tracks[0].permute(1, 0, 2).numpy().astype(np.float32),
            visible[0].permute(1, 0).numpy().astype(bool),
        )


def centroid_tracks(masks: np.ndarray) -> TrackedPoints:
    """One tracklet (1, T, 2): the centroid of each frame's foreground mask (T, H, W).

    A frame with an empty mask is invisible and holds the nearest earlier centroid (the first visible
    one for leading empty frames), so it adds no displacement.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks have shape {masks.shape}, expected (num_frames, height, width)")
    masks = masks.astype(bool)
    num_frames = len(masks)
    counts = masks.sum(axis=(1, 2))
    visible = counts > 0
    rows = np.arange(masks.shape[1], dtype=np.float64)
    columns = np.arange(masks.shape[2], dtype=np.float64)
    safe_counts = np.maximum(counts, 1)
    centroid_x = (masks.sum(axis=1) * columns).sum(axis=1) / safe_counts
    centroid_y = (masks.sum(axis=2) * rows).sum(axis=1) / safe_counts
    centroids = np.stack([centroid_x, centroid_y], axis=-1)
    if visible.any():
        last_seen = np.maximum.accumulate(np.where(visible, np.arange(num_frames), -1))
        last_seen = np.where(last_seen < 0, np.argmax(visible), last_seen)
        centroids = centroids[last_seen]
    return TrackedPoints(centroids[None].astype(np.float32), visible[None])


def foreground_by_background_colour(frames: np.ndarray, threshold: float = 40.0) -> np.ndarray:
    """(T, H, W) masks of pixels far from each frame's background colour (the median of its border pixels).

    Made for one shape on a plain background, as the toy world renders: a pixel is foreground when some
    channel differs from the background colour by more than ``threshold`` (0-255 scale).
    """
    frames = check_frames(frames).astype(np.int16)
    border = np.concatenate(
        [frames[:, 0, :], frames[:, -1, :], frames[:, :, 0], frames[:, :, -1]], axis=1
    )  # (T, 2W + 2H, 3)
    background = np.median(border, axis=1)[:, None, None, :]
    return (np.abs(frames - background) > threshold).any(axis=-1)


class CentroidTracker:
    """Tracks the centroid of the one foreground object per frame; ``grid_size`` and ``mask`` are ignored (N = 1).

    ``segmenter`` maps frames (T, H, W, 3) to masks (T, H, W); by default a plain-background colour
    segmentation. Pass ground-truth masks to `track_masks` when a video has them.
    """

    def __init__(
        self, segmenter: Callable[[np.ndarray], np.ndarray] = foreground_by_background_colour
    ) -> None:
        self.segmenter = segmenter

    def track(self, frames: np.ndarray, grid_size: int = 1, mask: np.ndarray | None = None) -> TrackedPoints:
        frames = check_frames(frames)
        masks = np.asarray(self.segmenter(frames))
        if masks.shape != frames.shape[:3]:
            raise ValueError(
                f"the segmenter returned masks of shape {masks.shape}, expected {frames.shape[:3]} "
                "(one mask per frame, same height and width)"
            )
        return centroid_tracks(masks)

    def track_masks(self, masks: np.ndarray) -> TrackedPoints:
        return centroid_tracks(masks)


TRACKER_BUILDERS: dict[str, Callable[..., PointTracker]] = {
    "lucas-kanade": LucasKanadeTracker,
    "cotracker": CoTrackerTracker.from_checkpoint,
    "centroid": CentroidTracker,
}


def build_tracker(name: str, **options: Any) -> PointTracker:
    """A tracker by name (``lucas-kanade``, ``cotracker``, ``centroid``) with its constructor options."""
    try:
        builder = TRACKER_BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown tracker '{name}'; expected one of {', '.join(sorted(TRACKER_BUILDERS))}"
        ) from None
    return builder(**options)


def _import_cv2():
    try:
        import cv2
    except ImportError as error:
        raise TrackerUnavailableError(
            f"the Lucas-Kanade tracker needs OpenCV ({error}); "
            "install it with `pip install opencv-python-headless`"
        ) from error
    return cv2
