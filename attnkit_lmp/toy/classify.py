"""Analytic reading of toy-world frames: where the object is, its colour, its shape, its path.

Works on any frames (rendered or generated): the background is the world's named background that best
matches the clip's per-pixel median over time (or, when none matches better, a plain colour estimated
from the frame border), the object is the largest connected region that differs from it, a distractor
the second largest, its colour is the nearest
palette colour of its most saturated pixels, its shape the nearest prototype in (fill of its box,
top/bottom width ratio) space. No learned component, so it can judge a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from attnkit_lmp.toy.world import (
    BACKGROUNDS,
    COLOURS,
    DEFAULT_WORLD,
    REFERENCE_FRAME_SIDE,
    SHAPES,
    weighted_centroids,
)
from attnkit_lmp.video_io import to_uint8

# Distance (RGB, 0..255) from the background above which a pixel is object: about half the smallest
# object/background colour distance of the palette, i.e. the 50% coverage of the ground-truth masks.
FOREGROUND_DISTANCE = 100.0
# Fewest pixels an object of a 32-px frame has (scaled with the frame area); smaller regions are noise.
MIN_OBJECT_AREA = 20.0
# Shape prototypes: (fill of the object's box, mean width of the top quarter / bottom quarter), the
# medians measured on rendered clips (square ~1.0/1.0, circle ~0.79/1.0, triangle ~0.58/0.18); see
# shape_features for what the box is.
SHAPE_PROTOTYPES: dict[str, tuple[float, float]] = {
    "square": (1.0, 1.0),
    "circle": (0.785, 1.0),
    "triangle": (0.575, 0.18),
}
# Features farther than this from every prototype describe no shape of the world (a blob, a smear).
SHAPE_MAX_DISTANCE = 0.2
# Path coherence: a path is coherent when median |acceleration| <= this x median speed. Rendered
# training trajectories stay below 0.5 (bounces, pauses and arcs included); independent random
# positions give ~1.4. See docs/toy-world.md.
COHERENCE_MAX_RATIO = 0.6
# A path "moves" when its median speed is at least this many pixels per frame.
MIN_MEDIAN_SPEED = 0.5


@dataclass
class FrameReading:
    """What the classifier saw in one clip (T frames)."""

    masks: np.ndarray  # (T, H, W) bool, largest foreground component per frame
    centroids: np.ndarray  # (T, 2) x, y, NaN where no object
    areas: np.ndarray  # (T,) pixels of the object per frame
    background: np.ndarray  # (H, W, 3) estimated background image
    background_name: str | None  # the world's background nearest to it
    colour: str | None
    shape: str | None
    shape_features: tuple[float, float]
    # Frames (T,) whose second-largest region is large enough to be a distractor.
    second_object: np.ndarray | None = None

    def summary(self) -> dict:
        return {
            "colour": self.colour,
            "shape": self.shape,
            "background": self.background_name,
            "fill_ratio": round(float(self.shape_features[0]), 4),
            "taper": round(float(self.shape_features[1]), 4),
            "areas": [int(area) for area in self.areas],
            "centroids": [[round(float(value), 3) for value in point] for point in self.centroids],
        }


@dataclass
class PathReport:
    """Smoothness of a centroid path: speeds, accelerations and the verdicts built on them."""

    median_speed: float
    max_speed: float
    median_acceleration: float
    coherence_ratio: float
    moves: bool
    coherent: bool

    def to_dict(self) -> dict:
        return {
            key: (round(value, 4) if isinstance(value, float) else value)
            for key, value in asdict(self).items()
        }


def estimate_background(frames: np.ndarray) -> tuple[str | None, np.ndarray]:
    """The clip's background: (nearest named background, (H, W, 3) image to segment against).

    The per-pixel median over time shows the static background wherever the objects move on. Each
    named background is scored by the median distance of that image to it; the plain colour of the
    frame border (the world keeps objects off it) is one more candidate, so a generated clip whose
    plain background is slightly off is segmented against its own colour, as it always was.
    """
    frames = to_uint8(frames).astype(np.float64)
    _, height, width, _ = frames.shape
    still = np.median(frames, axis=0)
    border = np.concatenate(
        [frames[:, 0].reshape(-1, 3), frames[:, -1].reshape(-1, 3), frames[:, :, 0].reshape(-1, 3)]
        + [frames[:, :, -1].reshape(-1, 3)]
    )
    plain = np.broadcast_to(np.median(border, axis=0), still.shape)
    scores = {
        name: float(np.median(np.linalg.norm(still - style.image(height, width), axis=-1)))
        for name, style in BACKGROUNDS.items()
    }
    nearest = min(scores, key=scores.get)
    plain_score = float(np.median(np.linalg.norm(still - plain, axis=-1)))
    if BACKGROUNDS[nearest].kind != "plain" and scores[nearest] < plain_score:
        return nearest, BACKGROUNDS[nearest].image(height, width)
    return nearest, np.array(plain)


def read_frames(frames, min_area: float | None = None, object_size: float | None = None) -> FrameReading:
    """Segment, locate and classify the object in ``frames`` (T,H,W,3 uint8 or float in [0,1]).

    A frame whose largest region is smaller than ``min_area`` pixels has no object; by default 20 px of a
    32-px frame, scaled with the frame's area (a 6 px triangle of a 16-px world covers ~18 px).
    ``object_size`` is the side of the world's object box (``WorldConfig.object_size``); by default the
    toy worlds' 12 px of a 32-px frame, scaled with the frame's side.
    """
    frames = to_uint8(frames)
    if min_area is None:
        min_area = MIN_OBJECT_AREA * frames.shape[1] * frames.shape[2] / REFERENCE_FRAME_SIDE**2
    if object_size is None:
        object_size = DEFAULT_WORLD.object_size * min(frames.shape[1:3]) / REFERENCE_FRAME_SIDE
    background_name, background = estimate_background(frames)
    distance = np.linalg.norm(frames.astype(np.float64) - background, axis=-1)
    masks = np.zeros(distance.shape, dtype=bool)
    second_object = np.zeros(len(frames), dtype=bool)
    for index, frame_distance in enumerate(distance):
        components = connected_components(frame_distance > FOREGROUND_DISTANCE)
        if components:
            masks[index] = components[0]
        second_object[index] = len(components) > 1 and components[1].sum() >= min_area / 4
    areas = masks.sum(axis=(1, 2))
    # Sub-pixel centroids: weight the pixels of (and around) the object by how far they are from the
    # background, relative to the object's own contrast, which approximates fractional coverage.
    grown = (
        masks | np.roll(masks, 1, 1) | np.roll(masks, -1, 1) | np.roll(masks, 1, 2) | np.roll(masks, -1, 2)
    )
    contrast = np.array([np.percentile(d[m], 90) if m.any() else 1.0 for d, m in zip(distance, masks)])
    soft = np.clip(distance / np.maximum(contrast, 1e-6)[:, None, None], 0, 1) * grown
    centroids = weighted_centroids(soft)
    centroids[areas < min_area] = np.nan
    colour = classify_colour(frames, masks)
    features = shape_features(masks[areas >= min_area], object_size)
    return FrameReading(
        masks=masks,
        centroids=centroids,
        areas=areas,
        background=background,
        background_name=background_name,
        colour=colour,
        shape=classify_shape_features(features),
        shape_features=features,
        second_object=second_object,
    )


def classify_colour(frames: np.ndarray, masks: np.ndarray) -> str | None:
    """Nearest palette colour to the mean of the object's most saturated half of pixels (None if no object)."""
    frames = to_uint8(frames).astype(np.float64)
    pixels = frames[masks]
    if len(pixels) == 0:
        return None
    _, background = estimate_background(frames)
    distance = np.linalg.norm(pixels - np.broadcast_to(background, frames.shape)[masks], axis=-1)
    # Edge pixels are blended with the background; the core ones carry the object's colour.
    core = pixels[distance >= np.median(distance)]
    mean = core.mean(axis=0)
    names = list(COLOURS)
    palette = np.array([COLOURS[name] for name in names], dtype=np.float64)
    return names[int(np.argmin(np.linalg.norm(palette - mean, axis=1)))]


def colour_fractions(frames) -> dict[str, float]:
    """Share of all foreground pixels (any region) nearest to each palette colour, e.g. to measure how
    much of a reference's colour leaked into a motion-transfer target. Empty frames give all zeros."""
    frames = to_uint8(frames).astype(np.float64)
    _, background = estimate_background(frames)
    pixels = frames[np.linalg.norm(frames - background, axis=-1) > FOREGROUND_DISTANCE]
    names = list(COLOURS)
    if len(pixels) == 0:
        return {name: 0.0 for name in names}
    palette = np.array([COLOURS[name] for name in names], dtype=np.float64)
    nearest = np.argmin(np.linalg.norm(pixels[:, None, :] - palette[None], axis=-1), axis=1)
    counts = np.bincount(nearest, minlength=len(names))
    return {name: float(count / len(pixels)) for name, count in zip(names, counts)}


def shape_features(masks: np.ndarray, object_size: float) -> tuple[float, float]:
    """Median over frames of (fill of the object's box, top-quarter width / bottom-quarter width).

    The fill is the larger of two estimates of how much of a square box the object covers, each of which
    errs only low: area over the mask's own bounding box, which a stray pixel or a one-pixel line beside a
    generated object enlarges (a generated square then fills ~0.8 of it, like a circle); and area over
    the world's ``object_size`` box, capped at 1, which a thresholded anti-aliased edge shrinks (a rendered
    square at a half-pixel offset loses a row and a column, ~0.84).
    """
    fills, tapers = [], []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            continue
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        fills.append(max(box.sum() / box.size, min(box.sum() / object_size**2, 1.0)))
        quarter = max(1, box.shape[0] // 4)
        bottom = box[-quarter:].sum(axis=1).mean()
        tapers.append(box[:quarter].sum(axis=1).mean() / max(bottom, 1e-6))
    if not fills:
        return (float("nan"), float("nan"))
    return (float(np.median(fills)), float(np.median(tapers)))


def classify_shape_features(features: tuple[float, float]) -> str | None:
    """Nearest shape prototype, or None when the features match no shape of the world."""
    if any(np.isnan(value) for value in features):
        return None
    best, best_distance = None, np.inf
    for name in SHAPES:
        fill, taper = SHAPE_PROTOTYPES[name]
        # Taper varies more (it is a ratio of small widths), so it counts half as much as fill.
        distance = float(np.hypot(features[0] - fill, 0.5 * (min(features[1], 2.0) - taper)))
        if distance < best_distance:
            best, best_distance = name, distance
    return best if best_distance <= SHAPE_MAX_DISTANCE else None


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a 2D boolean mask (an empty mask stays empty)."""
    components = connected_components(mask)
    return components[0] if components else np.zeros_like(np.asarray(mask, dtype=bool))


def connected_components(mask: np.ndarray) -> list[np.ndarray]:
    """The 4-connected regions of a 2D boolean mask as boolean masks, largest first."""
    mask = np.asarray(mask, dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.int32)
    sizes: dict[int, int] = {}
    next_label = 1
    height, width = mask.shape
    for start_row, start_col in zip(*np.nonzero(mask)):
        if labels[start_row, start_col]:
            continue
        labels[start_row, start_col] = next_label
        stack, size = [(start_row, start_col)], 0
        while stack:
            row, col = stack.pop()
            size += 1
            for nrow, ncol in ((row + 1, col), (row - 1, col), (row, col + 1), (row, col - 1)):
                if 0 <= nrow < height and 0 <= ncol < width and mask[nrow, ncol] and not labels[nrow, ncol]:
                    labels[nrow, ncol] = next_label
                    stack.append((nrow, ncol))
        sizes[next_label] = size
        next_label += 1
    order = sorted(sizes, key=lambda label: -sizes[label])
    return [labels == label for label in order]


def path_report(centroids: np.ndarray) -> PathReport:
    """Speeds and accelerations of a centroid path (T,2); frames without an object make it incoherent.

    coherence_ratio = median |c[t+2] - 2 c[t+1] + c[t]| / median |c[t+1] - c[t]|. Medians make one
    bounce or one start/stop (a few large accelerations) not count as incoherence, while a path that
    jumps from place to place has accelerations as large as its speeds (ratio ~1.4 for independent
    positions).
    """
    centroids = np.asarray(centroids, dtype=np.float64)
    if len(centroids) < 3 or np.isnan(centroids).any():
        return PathReport(float("nan"), float("nan"), float("nan"), float("inf"), False, False)
    velocities = np.diff(centroids, axis=0)
    accelerations = np.diff(velocities, axis=0)
    speeds = np.linalg.norm(velocities, axis=1)
    median_speed = float(np.median(speeds))
    median_acceleration = float(np.median(np.linalg.norm(accelerations, axis=1)))
    ratio = median_acceleration / median_speed if median_speed > 0 else float("inf")
    moves = median_speed >= MIN_MEDIAN_SPEED
    return PathReport(
        median_speed=median_speed,
        max_speed=float(speeds.max()),
        median_acceleration=median_acceleration,
        coherence_ratio=float(ratio),
        moves=bool(moves),
        coherent=bool(moves and ratio <= COHERENCE_MAX_RATIO),
    )
