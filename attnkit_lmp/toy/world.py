"""Seeded renderer of the toy world: a coloured shape moving on a named background, maybe beside a distractor.

A clip is fully determined by a :class:`ClipSpec` (colour, shape, background, trajectory family, seed,
split, and an optional distractor: a second, smaller shape of another colour that moves on its own
path) and a :class:`WorldConfig` (frame size, frame count, object and distractor size). Rendering
returns frames, per-frame ground-truth masks, centroids and the prompt ("a red square and a small blue
circle on a striped background"), so that both training and the motion-transfer measurements use the
same, exactly reproducible data.

Backgrounds are plain colours or static textures (:data:`BACKGROUNDS`); each is a pure function of the
frame size, so a third party can redraw them from :func:`world_description`.

Splits: training draws clips from the ``"train"`` split (trajectory families in
``TRAIN_TRAJECTORIES``); held-out reference clips come from the ``"heldout"`` split, whose random
streams are disjoint from the training ones by construction (a different seed namespace) and whose
trajectory families (``HELDOUT_TRAJECTORIES``) are never rendered during training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 90, 240),
    "yellow": (240, 220, 40),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")


@dataclass(frozen=True)
class BackgroundStyle:
    """How a named background is drawn: ``plain`` (one colour), or a static two-colour texture.

    ``stripes``: horizontal bands of ``period / 2`` px, first colour on top. ``checker``: squares of
    ``period / 2`` px, first colour at the top-left. Texture colours stay far (> 120 RGB units) from every
    object colour, so objects are still segmented from the background by colour distance alone.
    """

    kind: str
    colours: tuple[tuple[int, int, int], ...]
    period: int = 0

    def image(self, height: int, width: int) -> np.ndarray:
        """The background as a (height, width, 3) float array of RGB values in 0..255."""
        first, second = (np.array(colour, dtype=np.float64) for colour in (self.colours * 2)[:2])
        rows = np.arange(height)[:, None]
        cols = np.arange(width)[None, :]
        half = max(1, self.period // 2)
        if self.kind == "plain":
            use_second = np.zeros((height, width), dtype=bool)
        elif self.kind == "stripes":
            use_second = np.broadcast_to((rows // half) % 2 == 1, (height, width))
        else:  # checker
            use_second = ((rows // half) + (cols // half)) % 2 == 1
        return np.where(use_second[..., None], second, first)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "colours": [list(colour) for colour in self.colours], "period": self.period}


BACKGROUNDS: dict[str, BackgroundStyle] = {
    "black": BackgroundStyle("plain", ((0, 0, 0),)),
    "white": BackgroundStyle("plain", ((255, 255, 255),)),
    "gray": BackgroundStyle("plain", ((128, 128, 128),)),
    "striped": BackgroundStyle("stripes", ((25, 25, 25), (85, 85, 85)), period=8),
    "checkered": BackgroundStyle("checker", ((45, 45, 45), (100, 100, 100)), period=8),
}
DEFAULT_BACKGROUND = "black"
# The backgrounds of the first toy world (plain black and white); a WorldConfig chooses its own.
V1_BACKGROUNDS: tuple[str, ...] = ("black", "white")
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
# Prompt vocabulary: every word any prompt of the world can contain. New words go at the end, so the
# token ids of a saved model's words never move.
PROMPT_WORDS: tuple[str, ...] = (
    "a", *COLOURS, *SHAPES, "on", *V1_BACKGROUNDS, "background",
    *(name for name in BACKGROUNDS if name not in V1_BACKGROUNDS), "and", "small",
)  # fmt: skip


@dataclass(frozen=True)
class WorldConfig:
    """Geometry shared by every clip: frame size, number of frames and object size, all in pixels."""

    height: int = 32
    width: int = 32
    num_frames: int = 8
    object_size: int = 12
    supersample: int = 4
    # The named backgrounds this world draws, the default (unnamed in prompts) first.
    backgrounds: tuple[str, ...] = V1_BACKGROUNDS
    # Side of a distractor's bounding box; 0 for a world without distractors.
    distractor_size: int = 0

    def validate(self) -> None:
        for name in ("height", "width", "num_frames", "object_size", "supersample"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"WorldConfig.{name}={value!r} cannot render: expected a positive integer.")
        if not self.backgrounds or self.backgrounds[0] != DEFAULT_BACKGROUND:
            raise ValueError(
                f"WorldConfig.backgrounds={list(self.backgrounds)!r}: expected a list of background names"
                f" starting with the default {DEFAULT_BACKGROUND!r}."
            )
        for name in self.backgrounds:
            _check_choice("background", name, BACKGROUNDS)
        if not isinstance(self.distractor_size, (int, np.integer)) or not 0 <= self.distractor_size < self.object_size:
            raise ValueError(
                f"WorldConfig.distractor_size={self.distractor_size!r}: expected 0 (no distractors) or a size"
                f" below object_size={self.object_size}, so the subject stays the larger shape."
            )
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

    @property
    def distractor_world(self) -> WorldConfig:
        """The same world for a distractor: its paths keep the smaller shape inside the frame."""
        return replace(self, object_size=self.distractor_size, distractor_size=0)


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
    # A second, smaller shape that moves on its own path: (colour, shape, trajectory family), or None.
    distractor: tuple[str, str, str] | None = None

    def validate(self) -> None:
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("background", self.background, BACKGROUNDS)
        _check_choice("trajectory", self.trajectory, TRAJECTORIES)
        _check_choice("split", self.split, SPLIT_NAMESPACES)
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"ClipSpec.seed={self.seed!r} is invalid: expected a non-negative integer.")
        if self.distractor is not None:
            if len(self.distractor) != 3:
                raise ValueError(
                    f"ClipSpec.distractor={self.distractor!r}: expected (colour, shape, trajectory) or None."
                )
            colour, shape, trajectory = self.distractor
            _check_choice("distractor colour", colour, COLOURS)
            _check_choice("distractor shape", shape, SHAPES)
            _check_choice("distractor trajectory", trajectory, TRAJECTORIES)
            if colour == self.colour:
                raise ValueError(
                    f"ClipSpec.distractor colour {colour!r} equals the subject's: a distractor must differ in"
                    " colour so that the subject's words name the subject alone."
                )

    @property
    def subject(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def prompt(self) -> str:
        return prompt_for(self.colour, self.shape, self.background, self.distractor)

    @property
    def name(self) -> str:
        """A folder-safe unique name, e.g. ``heldout-wave-red-square-black-00003``."""
        name = f"{self.split}-{self.trajectory}-{self.colour}-{self.shape}-{self.background}"
        if self.distractor is not None:
            name += "-with-" + "-".join(self.distractor)
        return f"{name}-{self.seed:05d}"

    def to_dict(self) -> dict:
        values = asdict(self)
        values["distractor"] = None if self.distractor is None else list(self.distractor)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ClipSpec:
        values = dict(values)
        if values.get("distractor") is not None:
            values["distractor"] = tuple(values["distractor"])
        return cls(**values)


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
    # The distractor's masks (T,H,W bool) and centroids (T,2); None when the clip has none.
    distractor_masks: np.ndarray | None = field(default=None, repr=False)
    distractor_centroids: np.ndarray | None = field(default=None, repr=False)

    @property
    def prompt(self) -> str:
        return self.spec.prompt

    @property
    def subject(self) -> str:
        return self.spec.subject

    @property
    def name(self) -> str:
        return self.spec.name


def prompt_for(
    colour: str, shape: str, background: str = DEFAULT_BACKGROUND, distractor: tuple[str, ...] | None = None
) -> str:
    """The world's prompt: ``"a red square"``; a distractor adds ``"and a small blue circle"``, a
    non-default background ``"on a striped background"``."""
    _check_choice("colour", colour, COLOURS)
    _check_choice("shape", shape, SHAPES)
    _check_choice("background", background, BACKGROUNDS)
    prompt = f"a {colour} {shape}"
    if distractor is not None:
        prompt += f" and a small {distractor[0]} {distractor[1]}"
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
    distractor_probability: float = 0.0,
    world: WorldConfig | None = None,
) -> ClipSpec:
    """Draw colour, shape, background, trajectory family and distractor of clip ``seed`` of ``split``.

    ``background_probabilities`` defaults to 80% the default background, 20% the first world's white;
    trajectory families default to the split's own (``SPLIT_TRAJECTORIES``). With probability
    ``distractor_probability`` the clip has a distractor of another colour and shape, moving on a path
    of the same split's families; a distractor that ``world`` (needed then) cannot keep clear of the
    subject in every frame is left out. The distractor draws from its own stream, so clips without one
    are the same whatever the probability.
    """
    if distractor_probability and (world is None or not world.distractor_size):
        raise ValueError(
            f"distractor_probability={distractor_probability} needs the world (a WorldConfig with"
            " distractor_size > 0) to place distractors in: pass world=..."
        )
    rng = clip_rng(seed, split)
    families = trajectories or SPLIT_TRAJECTORIES[split]
    if background_probabilities is None:
        others = [name for name in V1_BACKGROUNDS if name != DEFAULT_BACKGROUND]
        background_probabilities = {DEFAULT_BACKGROUND: 0.8, **{name: 0.2 / len(others) for name in others}}
    names = list(background_probabilities)
    weights = np.array([background_probabilities[name] for name in names], dtype=float)
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(list(SHAPES)))
    trajectory = str(rng.choice(list(families)))
    background = str(rng.choice(names, p=weights / weights.sum()))
    distractor = None
    distractor_rng = np.random.default_rng([SPLIT_NAMESPACES[split], int(seed), 4])
    if distractor_rng.random() < distractor_probability:
        distractor = (
            str(distractor_rng.choice([name for name in COLOURS if name != colour])),
            str(distractor_rng.choice([name for name in SHAPES if name != shape])),
            str(distractor_rng.choice(list(families))),
        )
    spec = ClipSpec(colour, shape, trajectory, seed=int(seed), background=background, split=split)
    if distractor is not None:
        with_distractor = replace(spec, distractor=distractor)
        if _distractor_path(distractor[2], _subject_path(spec, world), with_distractor, world) is not None:
            return with_distractor
    return spec


def background_mix(world: WorldConfig, default_probability: float) -> dict[str, float]:
    """Background probabilities of ``world``: the default with ``default_probability``, the rest evenly."""
    others = world.backgrounds[1:]
    if not others:
        return {DEFAULT_BACKGROUND: 1.0}
    shared = (1 - default_probability) / len(others)
    return {DEFAULT_BACKGROUND: default_probability, **{name: shared for name in others}}


def substitute_subject(spec: ClipSpec) -> tuple[str, str]:
    """Another (colour, shape) for a motion-transfer target (see :func:`other_look`), seeded by ``spec``."""
    return other_look(spec, np.random.default_rng([SPLIT_NAMESPACES[spec.split], spec.seed, 2]))


def other_look(spec: ClipSpec, rng: np.random.Generator) -> tuple[str, str]:
    """A (colour, shape) drawn from ``rng`` that differs in both from ``spec``'s subject and, when the clip
    has one, from its distractor: a target that took the distractor's look must not pass for one that
    kept its own."""
    taken_colours, taken_shapes = {spec.colour}, {spec.shape}
    if spec.distractor is not None:
        taken_colours.add(spec.distractor[0])
        taken_shapes.add(spec.distractor[1])
    colour = str(rng.choice([name for name in COLOURS if name not in taken_colours]))
    shape = str(rng.choice([name for name in SHAPES if name not in taken_shapes]))
    return colour, shape


def substitute_background(spec: ClipSpec, world: WorldConfig | None = None) -> str:
    """Another background of ``world`` than ``spec``'s, seeded by the spec (the first world's two by default)."""
    names = [name for name in (world or DEFAULT_WORLD).backgrounds if name != spec.background]
    if not names:
        raise ValueError(f"the world has no background other than {spec.background!r} to substitute.")
    rng = np.random.default_rng([SPLIT_NAMESPACES[spec.split], spec.seed, 5])
    return str(rng.choice(names))


def render_clip(spec: ClipSpec, config: WorldConfig = DEFAULT_WORLD) -> Clip:
    """Render the clip described by ``spec``; the same spec and config always give identical arrays."""
    spec.validate()
    config.validate()
    path = _subject_path(spec, config)
    if spec.distractor is None:
        frames, masks, coverage = render_path(
            spec.colour, spec.shape, path, spec.background, config, return_coverage=True
        )
        return Clip(spec, config, frames, masks, weighted_centroids(coverage), path)
    if not config.distractor_size:
        raise ValueError(
            f"clip {spec.name} has a distractor but the world's distractor_size is 0: use a WorldConfig with"
            " distractor_size > 0, or a spec without a distractor."
        )
    colour, shape, trajectory = spec.distractor
    distractor_path = _distractor_path(trajectory, path, spec, config)
    if distractor_path is None:
        raise ValueError(
            f"could not place the {trajectory!r} distractor of clip {spec.name} clear of the subject: use a"
            " larger frame, a smaller distractor, or draw specs with random_clip_spec(world=...), which"
            " leaves such distractors out."
        )
    small = config.distractor_world
    canvas = BACKGROUNDS[spec.background].image(config.height, config.width)
    distractor_coverage = _coverage(shape, distractor_path, small)
    canvas = _composite(canvas, COLOURS[colour], distractor_coverage)
    # The subject is drawn last, over the distractor; paths keep them apart, so nothing is hidden.
    subject_coverage = _coverage(spec.shape, path, config)
    frames = _to_uint8(_composite(canvas, COLOURS[spec.colour], subject_coverage))
    return Clip(
        spec,
        config,
        frames,
        subject_coverage >= 0.5,
        weighted_centroids(subject_coverage),
        path,
        distractor_masks=distractor_coverage >= 0.5,
        distractor_centroids=weighted_centroids(distractor_coverage),
    )


def _subject_path(spec: ClipSpec, config: WorldConfig) -> np.ndarray:
    # The path draws from its own child stream so that adding spec fields never shifts it.
    return trajectory_path(spec.trajectory, np.random.default_rng([SPLIT_NAMESPACES[spec.split], spec.seed, 1]), config)


def _distractor_path(
    trajectory: str, subject_path: np.ndarray, spec: ClipSpec, config: WorldConfig
) -> np.ndarray | None:
    """A path for the distractor that keeps its box clear of the subject's in every frame (None if none
    is found)."""
    rng = np.random.default_rng([SPLIT_NAMESPACES[spec.split], spec.seed, 3])
    clearance = (config.object_size + config.distractor_size) / 2 + 1
    for _ in range(2000):
        path = trajectory_path(trajectory, rng, config.distractor_world)
        if np.all(np.abs(path - subject_path).max(axis=1) >= clearance):
            return path
    return None


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
    coverages = _coverage(shape, path, config)
    canvas = BACKGROUNDS[background].image(config.height, config.width)
    frames = _to_uint8(_composite(canvas, COLOURS[colour], coverages))
    masks = coverages >= 0.5
    return (frames, masks, coverages) if return_coverage else (frames, masks)


def _coverage(shape: str, path: np.ndarray, config: WorldConfig) -> np.ndarray:
    """Fraction (T,H,W) of each pixel that ``shape`` of ``config.object_size`` covers at ``path[t]``."""
    factor = config.supersample
    # Coordinates of sub-pixel centres, in pixel units.
    ys = (np.arange(config.height * factor) + 0.5) / factor
    xs = (np.arange(config.width * factor) + 0.5) / factor
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    coverages = np.empty((len(path), config.height, config.width), dtype=np.float64)
    for index, (centre_x, centre_y) in enumerate(path):
        inside = _shape_inside(shape, grid_x - centre_x, grid_y - centre_y, config.object_size)
        coverages[index] = inside.reshape(config.height, factor, config.width, factor).mean(axis=(1, 3))
    return coverages


def _composite(canvas: np.ndarray, rgb: tuple[int, int, int], coverage: np.ndarray) -> np.ndarray:
    """Blend colour ``rgb`` over ``canvas`` ((H,W,3) or (T,H,W,3) floats) by per-pixel ``coverage`` (T,H,W)."""
    alpha = coverage[..., None]
    return canvas * (1 - alpha) + np.array(rgb, dtype=np.float64) * alpha


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def world_description(world: WorldConfig) -> dict:
    """Everything a third party needs to render in-distribution clips of ``world`` by its own code:
    geometry, palette, shapes, each background's drawing, the prompt grammar and the trajectory families.

    The rules are exact: a renderer that follows them reproduces :func:`render_path` pixel for pixel
    (``tests/toy/test_world_v2.py`` has one that reads nothing but this description)."""
    return {
        "frame": {"height": world.height, "width": world.width, "num_frames": world.num_frames},
        "coordinates": "(x, y) in pixels from the frame's top-left corner, x to the right, y down; pixel"
        " (row i, column j) covers [j, j + 1) x [i, i + 1)",
        "object_size": world.object_size,
        "distractor_size": world.distractor_size,
        "object_centre_margin": world.margin,
        "supersample": world.supersample,
        "palette": {name: list(rgb) for name, rgb in COLOURS.items()},
        "shapes": {
            "square": "axis-aligned square filling the object_size box: |dx| <= s/2 and |dy| <= s/2",
            "circle": "disc of diameter object_size: dx^2 + dy^2 <= (s/2)^2",
            "triangle": "apex at the top centre of the box, base along its bottom edge:"
            " -s/2 <= dy <= s/2 and |dx| <= (s/2) (dy + s/2) / s",
        },
        "shape_coordinates": "(dx, dy) = a point minus the shape's centre (the centre of its box); s ="
        " object_size for the subject, distractor_size for the distractor",
        "backgrounds": {name: BACKGROUNDS[name].to_dict() for name in world.backgrounds},
        "background_kinds": {
            "plain": "every pixel colours[0]",
            "stripes": "horizontal bands period // 2 px tall: pixel row i is colours[(i // (period // 2)) % 2]",
            "checker": "squares of period // 2 px: pixel (i, j) is colours[(i // (period // 2) + j // (period //"
            " 2)) % 2]",
        },
        "default_background": DEFAULT_BACKGROUND,
        "prompt": "a {colour} {shape}[ and a small {colour} {shape}][ on a {background} background]"
        " (the default background is not named)",
        "anti_aliasing": "coverage by supersample x supersample sub-pixels; pixel = blend of background and"
        " object colour by coverage; the distractor is drawn first, the subject over it",
        "sub_pixels": "the sub-pixel centres of row i and column j are at ((j + (b + 0.5) / supersample), (i +"
        " (a + 0.5) / supersample)) for a, b in 0 .. supersample - 1; a sub-pixel counts when it is inside"
        " the shape",
        "pixel_values": "background * (1 - coverage) + colour * coverage, rounded to the nearest integer"
        " (half to even) and clipped to 0..255, RGB uint8",
        "trajectories": {"train": list(TRAIN_TRAJECTORIES), "heldout": list(HELDOUT_TRAJECTORIES)},
    }


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
