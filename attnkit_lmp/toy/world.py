"""Seeded renderer of the toy world: one coloured shape moving on a plain background.

A clip is fully determined by a :class:`ClipSpec` (colour, shape, background, trajectory family, seed,
split) and a :class:`WorldConfig` (frame size, frame count, object size). Rendering returns frames,
per-frame ground-truth masks, centroids and the prompt ("a red square"), so that both training and the
motion-transfer measurements use the same, exactly reproducible data.

Splits: training draws clips from the ``"train"`` split (trajectory families in
``TRAIN_TRAJECTORIES``); held-out reference clips come from the ``"heldout"`` split, whose random
streams are disjoint from the training ones by construction (a different seed namespace) and whose
trajectory families (``HELDOUT_TRAJECTORIES``) are never rendered during training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 90, 240),
    "yellow": (240, 220, 40),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "white": (255, 255, 255)}
DEFAULT_BACKGROUND = "black"
# Trajectory speeds are defined for frames of this side and scale with the frame (see trajectory_path).
REFERENCE_FRAME_SIDE = 32

TRAIN_TRAJECTORIES: tuple[str, ...] = ("straight", "bouncing", "curved", "stop_and_go")
HELDOUT_TRAJECTORIES: tuple[str, ...] = ("wave", "accelerating")
TRAJECTORIES: tuple[str, ...] = TRAIN_TRAJECTORIES + HELDOUT_TRAJECTORIES

# Seed namespaces: the first entropy word of every clip's random stream. Different namespaces give
# statistically independent streams, so no held-out clip can coincide with a training clip.
SPLIT_NAMESPACES: dict[str, int] = {"train": 0, "heldout": 1}
SPLIT_TRAJECTORIES: dict[str, tuple[str, ...]] = {
    "train": TRAIN_TRAJECTORIES,
    "heldout": HELDOUT_TRAJECTORIES,
}

# Prompt vocabulary: every word any prompt of the world can contain.
PROMPT_WORDS: tuple[str, ...] = ("a", *COLOURS, *SHAPES, "on", *BACKGROUNDS, "background")


@dataclass(frozen=True)
class WorldConfig:
    """Geometry shared by every clip: frame size, number of frames and object size, all in pixels."""

    height: int = 32
    width: int = 32
    num_frames: int = 8
    object_size: int = 12
    supersample: int = 4

    def validate(self) -> None:
        for name in ("height", "width", "num_frames", "object_size", "supersample"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"WorldConfig.{name}={value!r} cannot render: expected a positive integer.")
        if self.num_frames < 2:
            raise ValueError(
                f"WorldConfig.num_frames={self.num_frames} cannot show motion: expected at least 2 frames."
            )
        smallest_side = min(self.height, self.width)
        if self.object_size + 2 > smallest_side:
            raise ValueError(
                f"WorldConfig.object_size={self.object_size} px does not fit a {self.height}x{self.width} frame"
                f" with a 1 px margin: expected object_size <= {smallest_side - 2}; use a smaller object or a"
                " larger frame."
            )

    @property
    def margin(self) -> float:
        """Smallest distance of the object's centre from the frame border that keeps it fully inside."""
        return self.object_size / 2 + 1


DEFAULT_WORLD = WorldConfig()


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides one clip's content besides the world geometry."""

    colour: str
    shape: str
    trajectory: str
    seed: int = 0
    background: str = DEFAULT_BACKGROUND
    split: str = "train"

    def validate(self) -> None:
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("background", self.background, BACKGROUNDS)
        _check_choice("trajectory", self.trajectory, TRAJECTORIES)
        _check_choice("split", self.split, SPLIT_NAMESPACES)
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"ClipSpec.seed={self.seed!r} is invalid: expected a non-negative integer.")

    @property
    def subject(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def prompt(self) -> str:
        return prompt_for(self.colour, self.shape, self.background)

    @property
    def name(self) -> str:
        """A folder-safe unique name, e.g. ``heldout-wave-red-square-black-00003``."""
        return f"{self.split}-{self.trajectory}-{self.colour}-{self.shape}-{self.background}-{self.seed:05d}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clip:
    """A rendered clip: frames (T,H,W,3 uint8), masks (T,H,W bool), centroids (T,2 float, x then y).

    Centroids are coverage-weighted (sub-pixel); ``path`` is the bounding-box centre per frame.
    """

    spec: ClipSpec
    config: WorldConfig
    frames: np.ndarray
    masks: np.ndarray
    centroids: np.ndarray
    path: np.ndarray = field(repr=False)

    @property
    def prompt(self) -> str:
        return self.spec.prompt

    @property
    def subject(self) -> str:
        return self.spec.subject

    @property
    def name(self) -> str:
        return self.spec.name


def prompt_for(colour: str, shape: str, background: str = DEFAULT_BACKGROUND) -> str:
    """The world's prompt: ``"a red square"``; a non-default background adds ``"on a white background"``."""
    _check_choice("colour", colour, COLOURS)
    _check_choice("shape", shape, SHAPES)
    _check_choice("background", background, BACKGROUNDS)
    prompt = f"a {colour} {shape}"
    if background != DEFAULT_BACKGROUND:
        prompt += f" on a {background} background"
    return prompt


def clip_rng(seed: int, split: str = "train") -> np.random.Generator:
    """The random stream of clip ``seed`` in ``split``; streams of different splits never coincide."""
    _check_choice("split", split, SPLIT_NAMESPACES)
    return np.random.default_rng([SPLIT_NAMESPACES[split], int(seed)])


def random_clip_spec(
    seed: int,
    split: str = "train",
    background_probabilities: dict[str, float] | None = None,
    trajectories: tuple[str, ...] | None = None,
) -> ClipSpec:
    """Draw colour, shape, background and trajectory family of clip ``seed`` of ``split``.

    ``background_probabilities`` defaults to 80% the default background, 20% the others; trajectory
    families default to the split's own (``SPLIT_TRAJECTORIES``).
    """
    rng = clip_rng(seed, split)
    families = trajectories or SPLIT_TRAJECTORIES[split]
    if background_probabilities is None:
        others = [name for name in BACKGROUNDS if name != DEFAULT_BACKGROUND]
        background_probabilities = {DEFAULT_BACKGROUND: 0.8, **{name: 0.2 / len(others) for name in others}}
    names = list(background_probabilities)
    weights = np.array([background_probabilities[name] for name in names], dtype=float)
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(list(SHAPES)))
    trajectory = str(rng.choice(list(families)))
    background = str(rng.choice(names, p=weights / weights.sum()))
    return ClipSpec(colour, shape, trajectory, seed=int(seed), background=background, split=split)


def substitute_subject(spec: ClipSpec) -> tuple[str, str]:
    """Another (colour, shape) for a motion-transfer target: both differ from ``spec``'s, seeded by it."""
    rng = np.random.default_rng([SPLIT_NAMESPACES[spec.split], spec.seed, 2])
    colour = str(rng.choice([name for name in COLOURS if name != spec.colour]))
    shape = str(rng.choice([name for name in SHAPES if name != spec.shape]))
    return colour, shape


def substitute_background(spec: ClipSpec) -> str:
    """Another background than ``spec``'s (the world has two)."""
    return next(name for name in BACKGROUNDS if name != spec.background)


def render_clip(spec: ClipSpec, config: WorldConfig = DEFAULT_WORLD) -> Clip:
    """Render the clip described by ``spec``; the same spec and config always give identical arrays."""
    spec.validate()
    config.validate()
    # The path draws from its own child stream so that adding spec fields never shifts it.
    path_rng = np.random.default_rng([SPLIT_NAMESPACES[spec.split], spec.seed, 1])
    path = trajectory_path(spec.trajectory, path_rng, config)
    frames, masks, coverage = render_path(
        spec.colour, spec.shape, path, spec.background, config, return_coverage=True
    )
    return Clip(
        spec=spec,
        config=config,
        frames=frames,
        masks=masks,
        centroids=weighted_centroids(coverage),
        path=path,
    )


def render_path(
    colour: str,
    shape: str,
    path: np.ndarray,
    background: str = DEFAULT_BACKGROUND,
    config: WorldConfig = DEFAULT_WORLD,
    return_coverage: bool = False,
):
    """Render ``shape`` in ``colour`` with its bounding-box centre at ``path[t] = (x, y)`` in frame t.

    Edges are anti-aliased by supersampling; the mask of a frame is where the object covers at least
    half of a pixel. Returns ``(frames uint8 (T,H,W,3), masks bool (T,H,W))``, plus the fractional
    coverage (T,H,W float) of each pixel when ``return_coverage``.
    """
    config.validate()
    _check_choice("colour", colour, COLOURS)
    _check_choice("shape", shape, SHAPES)
    _check_choice("background", background, BACKGROUNDS)
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) < 1:
        raise ValueError(f"path has shape {path.shape}: expected (num_frames, 2) positions (x, y).")
    factor = config.supersample
    # Coordinates of sub-pixel centres, in pixel units.
    ys = (np.arange(config.height * factor) + 0.5) / factor
    xs = (np.arange(config.width * factor) + 0.5) / factor
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    object_rgb = np.array(COLOURS[colour], dtype=np.float64)
    background_rgb = np.array(BACKGROUNDS[background], dtype=np.float64)
    frames = np.empty((len(path), config.height, config.width, 3), dtype=np.uint8)
    coverages = np.empty((len(path), config.height, config.width), dtype=np.float64)
    for index, (centre_x, centre_y) in enumerate(path):
        inside = _shape_inside(shape, grid_x - centre_x, grid_y - centre_y, config.object_size)
        coverage = inside.reshape(config.height, factor, config.width, factor).mean(axis=(1, 3))
        pixels = background_rgb * (1 - coverage[..., None]) + object_rgb * coverage[..., None]
        frames[index] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        coverages[index] = coverage
    masks = coverages >= 0.5
    return (frames, masks, coverages) if return_coverage else (frames, masks)


def weighted_centroids(weights: np.ndarray) -> np.ndarray:
    """Weighted centroid (x, y) of each frame, in pixels (pixel (0, 0) spans [0, 1)); NaN for empty frames.

    Weights are a mask (0/1) or a soft coverage; coverage gives sub-pixel accurate centroids, which keeps
    the jitter of slow, smooth paths far below their speed.
    """
    weights = np.asarray(weights, dtype=np.float64)
    _, height, width = weights.shape
    total = weights.sum(axis=(1, 2))
    xs = (weights * (np.arange(width) + 0.5)[None, None, :]).sum(axis=(1, 2))
    ys = (weights * (np.arange(height) + 0.5)[None, :, None]).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = np.stack([xs / total, ys / total], axis=1)
    centroids[total <= 0] = np.nan
    return centroids


def trajectory_path(kind: str, rng: np.random.Generator, config: WorldConfig = DEFAULT_WORLD) -> np.ndarray:
    """Positions (T, 2) of the object's bounding-box centre for trajectory family ``kind``.

    Every position keeps the whole object inside the frame. Families: ``straight`` (constant velocity),
    ``bouncing`` (constant speed, reflected at the walls, at least one bounce), ``curved`` (circular
    arc), ``stop_and_go`` (straight with a two-frame pause), and the held-out ``wave`` (a line with a
    sinusoidal sideways swing) and ``accelerating`` (straight, speed growing linearly).

    Speeds and radii are given for a 32 px frame and scale with the smaller side of the frame, so a
    smaller world has the same motion relative to its size.
    """
    _check_choice("trajectory", kind, TRAJECTORIES)
    config.validate()
    low = np.array([config.margin, config.margin])
    high = np.array([config.width - config.margin, config.height - config.margin])
    steps = np.arange(config.num_frames, dtype=np.float64)
    scale = min(config.height, config.width) / REFERENCE_FRAME_SIDE
    for _ in range(1000):
        start = rng.uniform(low, high)
        angle = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        if kind == "straight":
            path = start + np.outer(steps * scale * rng.uniform(1.5, 2.5), direction)
        elif kind == "stop_and_go":
            speeds = np.full(config.num_frames - 1, scale * rng.uniform(2.0, 3.0))
            pause_start = rng.integers(1, max(2, config.num_frames - 3))
            speeds[pause_start : pause_start + 2] = 0.0
            distance = np.concatenate([[0.0], np.cumsum(speeds)])
            path = start + np.outer(distance, direction)
        elif kind == "accelerating":
            speeds = scale * np.linspace(0.4, 3.4, config.num_frames - 1)
            path = start + np.outer(np.concatenate([[0.0], np.cumsum(speeds)]), direction)
        elif kind == "curved":
            radius = scale * rng.uniform(6.0, 12.0)
            angular_step = scale * rng.uniform(1.5, 2.5) / radius * rng.choice([-1.0, 1.0])
            angles = angle + steps * angular_step
            centre = start - radius * np.array([np.cos(angle), np.sin(angle)])
            path = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        elif kind == "wave":
            along = steps * scale * rng.uniform(1.5, 2.2)
            sideways = scale * rng.uniform(2.5, 4.0) * np.sin(2 * np.pi * steps / (config.num_frames - 1))
            normal = np.array([-direction[1], direction[0]])
            path = start + np.outer(along, direction) + np.outer(sideways, normal)
        else:  # bouncing
            unfolded = start + np.outer(steps * scale * rng.uniform(2.5, 3.5), direction)
            if np.all((unfolded >= low) & (unfolded <= high)):
                continue  # no wall was hit: not a bounce
            path = _fold_into_box(unfolded, low, high)
        if np.all((path >= low - 1e-9) & (path <= high + 1e-9)):
            return path
    raise ValueError(
        f"could not fit a {kind!r} trajectory of {config.num_frames} frames in a {config.height}x{config.width}"
        f" frame with object_size={config.object_size}: use a larger frame, a smaller object or fewer frames."
    )


def _fold_into_box(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Reflect positions at the box walls, as a ball bouncing elastically would move."""
    span = high - low
    offset = np.mod(points - low, 2 * span)
    return low + np.where(offset > span, 2 * span - offset, offset)


def _shape_inside(shape: str, dx: np.ndarray, dy: np.ndarray, size: float) -> np.ndarray:
    half = size / 2
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    # Upward triangle filling the bounding box: apex at the top centre, base at the bottom.
    height_fraction = (dy + half) / size
    return (dy >= -half) & (dy <= half) & (np.abs(dx) <= half * height_fraction)


def _check_choice(what: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: expected one of {sorted(choices)}.")
