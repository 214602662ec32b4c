"""Scores of a generated toy clip against its reference: is the motion the reference's, the look the target's?

Toy-world videos hold one coloured shape (and perhaps a distractor) on a known background, so a clip is
read exactly by the analytic classifier of :mod:`attnkit_lmp.toy.classify` (no learned model), and scored:

- motion fidelity, the DMT formula (:mod:`attnkit_lmp.eval.motion_fidelity`), on two kinds of tracks:
  the object's centroid (one tracklet, :func:`centroid_motion_fidelity`) and a Lucas-Kanade grid
  (:func:`grid_motion_fidelity`: both videos tracked the same way, 4x upscaled because a 21-px LK window
  on a 32-px frame sees the whole frame);
- centroid path error (mean pixel distance per frame, :func:`path_errors`) against the reference path, and
  against two controls a clip that ignored the reference could match as well: the time-reversed reference
  path and the reference's mean position; and how far the object went (:func:`motion_extent`);
- the target's colour and shape kept (the classifier reads the prompted ones), and how much of the object
  has the *reference's* colour (leaked appearance);
- FBDM's foreground mask against the ground-truth masks pooled to the latent grid (IoU).

:func:`score_transfer` gives all of them for the toy measurement (:mod:`attnkit_lmp.toy.measure`), which
knows the reference's rendered ground truth. :class:`ToyWorldMetrics` gives the checks the evaluation sweep
adds with ``--toy-metrics``, where the reference is a video read like the generated one
(:func:`toy_world_metrics`):

* ``path_error`` — mean distance in pixels between the object's centroid in the generated video and in
  the reference, over frames where both show an object (NaN when no frame does);
* ``appearance_kept`` — 1.0 when the generated object has the colour and shape of the *target* subject
  (e.g. "blue square"), else 0.0: motion was transferred without copying the reference's look;
* ``object_present`` — fraction of generated frames in which an object is found;
* ``centroid_mf`` — MF of the one centroid tracklet against the reference's, with a frame without object
  counting as lost (the two steps touching it earn nothing; the other steps still count): how the
  *object* moves, whatever the background does;
* ``motion_extent`` — the generated centroid path's length over the reference's: MF scores directions
  only, so an object that follows the right directions over a fraction of the distance still gets full
  MF; this says how far it went.
"""

from __future__ import annotations

import numpy as np

from attnkit_lmp.eval.motion_fidelity import motion_fidelity
from attnkit_lmp.eval.trackers import box_mask, build_tracker
from attnkit_lmp.toy.classify import read_frames
from attnkit_lmp.toy.world import BACKGROUNDS, COLOURS, REFERENCE_FRAME_SIDE, SHAPES, Clip
from attnkit_lmp.video_io import to_uint8

# Grid tracking: frames are upscaled by this factor, a GRID_SIZE x GRID_SIZE grid is tracked. (A larger
# factor for 16-px frames was worse: LK lost most points of 8x-upscaled frames.)
GRID_UPSCALE = 4
GRID_SIZE = 16
# A pixel is "of colour c" when c is its nearest colour among palette and background and it is this close.
COLOUR_MATCH_DISTANCE = 90.0
CENTROID_MIN_DISPLACEMENT = 0.25
"""Pixels per frame of a 32-px toy frame: the slowest held-out step is 0.4 px (the accelerating path's first).
Scaled with the frame side, as the world's motion is (:func:`centroid_min_displacement`)."""
TOY_METRIC_NAMES: tuple[str, ...] = (
    "path_error",
    "appearance_kept",
    "object_present",
    "centroid_mf",
    "motion_extent",
)
"""The checks :func:`toy_world_metrics` returns (the sweep's report shows them as its toy table)."""


def grid_motion_fidelity(
    generated: np.ndarray, reference: np.ndarray, tracker=None, reference_mask: np.ndarray | None = None
) -> float:
    """MF of Lucas-Kanade grid tracks of two ``(T, H, W, 3)`` uint8 videos, both upscaled ``GRID_UPSCALE`` x.

    With ``reference_mask`` (the reference object's first-frame mask), both grids are restricted to its
    bounding box, as DMT's ``use_mask`` does: under MF's rules a static background tracklet scores 0, so a
    whole-frame grid on a toy frame (a small object on a still background) would measure mostly background.
    """
    tracker = tracker or build_tracker("lucas-kanade")
    mask = None
    if reference_mask is not None:
        mask = box_mask(np.asarray(reference_mask).repeat(GRID_UPSCALE, axis=0).repeat(GRID_UPSCALE, axis=1))

    def track(video):
        upscaled = np.ascontiguousarray(video.repeat(GRID_UPSCALE, axis=1).repeat(GRID_UPSCALE, axis=2))
        return tracker.track(upscaled, GRID_SIZE, mask=mask)

    generated_points, reference_points = track(generated), track(reference)
    return motion_fidelity(
        generated_points.tracks,
        reference_points.tracks,
        generated_visible=generated_points.visible,
        reference_visible=reference_points.visible,
        min_displacement=centroid_min_displacement(min(reference.shape[1:3])) * GRID_UPSCALE,
    ).score


def path_errors(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean distance (px) of a generated centroid path to the reference path and to the two controls, and
    the reference's own distance to its mean position (``path_error_parked_control``: the path error an
    object parked there would have).

    Frames where either path has no object (NaN) are left out of the means (``present_fraction`` says how
    many counted); NaN when none is left.
    """
    present = np.isfinite(generated).all(axis=1) & np.isfinite(reference).all(axis=1)
    controls = {
        "path_error": reference,
        "path_error_reversed": reference[::-1],
        "path_error_mean_position": np.repeat(reference.mean(axis=0, keepdims=True), len(reference), axis=0),
    }
    errors = {}
    for name, path in controls.items():
        distances = np.linalg.norm(generated[present] - path[present], axis=1)
        errors[name] = float(distances.mean()) if present.any() else float("nan")
    # The control a clip that ignored the reference's motion could still match: an object parked at the
    # reference's mean position, scored against the reference like any generated clip.
    parked = np.linalg.norm(reference - reference.mean(axis=0, keepdims=True), axis=1)
    errors["path_error_parked_control"] = float(parked[present].mean()) if present.any() else float("nan")
    errors["present_fraction"] = float(present.mean())
    return errors


def colour_pixels(video: np.ndarray, colour: str, background: str) -> np.ndarray:
    """(T, H, W) pixels whose nearest colour among palette and background colours is ``colour`` (and close to it)."""
    background_colours = BACKGROUNDS[background].colours
    names = [*COLOURS, *(["background"] * len(background_colours))]
    palette = np.array([*COLOURS.values(), *background_colours], dtype=np.float64)
    distances = np.linalg.norm(video.astype(np.float64)[..., None, :] - palette, axis=-1)
    nearest = distances.argmin(axis=-1)
    index = names.index(colour)
    return (nearest == index) & (distances[..., index] <= COLOUR_MATCH_DISTANCE)


def appearance_scores(video: np.ndarray, case, reading) -> dict[str, object]:
    """Target colour/shape kept by the classifier, and the share of object-coloured pixels in the reference
    colour; ``case`` is a :class:`~attnkit_lmp.toy.measure.TransferCase`."""
    background = case.reference.background
    object_pixels = sum(colour_pixels(video, colour, background).sum() for colour in COLOURS)
    leaked = colour_pixels(video, case.reference.colour, background).sum()
    return {
        "colour": reading.colour,
        "shape": reading.shape,
        "colour_kept": reading.colour == case.target_colour,
        "shape_kept": reading.shape == case.target_shape,
        "appearance_kept": reading.colour == case.target_colour and reading.shape == case.target_shape,
        "reference_colour_read": reading.colour == case.reference.colour,
        "reference_colour_share": float(leaked / object_pixels) if object_pixels else 0.0,
    }


def ground_truth_on_grid(masks: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Ground-truth masks (T, H, W) pooled to a latent grid (frames, h, w): a cell is in where >= half of it is."""
    frames, height, width = grid
    masks = np.asarray(masks, dtype=np.float64)
    if masks.shape[1] % height or masks.shape[2] % width:
        raise ValueError(f"masks of size {masks.shape[1:]} do not tile the latent grid {height}x{width}.")
    pick = np.linspace(0, len(masks) - 1, frames).round().astype(int)
    pooled = masks[pick].reshape(frames, height, masks.shape[1] // height, width, masks.shape[2] // width)
    return pooled.mean(axis=(2, 4)) >= 0.5


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean over frames of intersection over union (a frame where both are empty counts as 1)."""
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    intersection = (predicted & truth).sum(axis=(1, 2))
    union = (predicted | truth).sum(axis=(1, 2))
    return float(np.mean(np.where(union > 0, intersection / np.maximum(union, 1), 1.0)))


def distractor_scores(generated: np.ndarray, clip: Clip) -> dict[str, float]:
    """How close the generated object's path is to the reference's distractor, against its distance to the
    reference subject's: ``follows_distractor`` is 1 when it is nearer the distractor's path."""
    if clip.distractor_centroids is None:
        return {}
    present = np.isfinite(generated).all(axis=1)
    if not present.any():
        return {"path_error_to_distractor": float("nan")}
    to_distractor = float(np.linalg.norm(generated[present] - clip.distractor_centroids[present], axis=1).mean())
    to_subject = float(np.linalg.norm(generated[present] - clip.centroids[present], axis=1).mean())
    return {"path_error_to_distractor": to_distractor, "follows_distractor": float(to_distractor < to_subject)}


def fbdm_scores(records: list, clip: Clip) -> dict[str, float]:
    """IoU of FBDM's final mask (used for the rest of the run) and the mean over its refreshes."""
    if not records:
        return {}
    ious = []
    for record in records:
        mask = record.mask.numpy() if hasattr(record.mask, "numpy") else np.asarray(record.mask)
        ious.append(mask_iou(mask, ground_truth_on_grid(clip.masks, mask.shape)))
    final = records[-1].mask
    return {
        "fbdm_iou": ious[-1],
        "fbdm_iou_mean_over_steps": float(np.mean(ious)),
        "fbdm_foreground_fraction": float(np.asarray(final, dtype=bool).mean()),
    }


def score_transfer(frames, clip: Clip, case, fbdm_records=None, tracker=None) -> dict:
    """Every metric of one generated clip against its rendered reference ``clip`` (see the module docstring);
    ``case`` is the :class:`~attnkit_lmp.toy.measure.TransferCase` that generated it."""
    video = to_uint8(frames)
    reading = read_frames(video)
    errors = path_errors(reading.centroids, clip.centroids)
    scores = {
        "motion_fidelity_centroid": centroid_motion_fidelity(
            reading.centroids, clip.centroids, min(clip.frames.shape[1:3])
        ),
        "motion_fidelity_grid": grid_motion_fidelity(video, clip.frames, tracker, clip.masks[0]),
        **errors,
        "path_error_vs_parked": errors["path_error"] / max(errors["path_error_parked_control"], 1e-6),
        "present_every_frame": float(errors["present_fraction"] == 1.0),
        "motion_extent": motion_extent(reading.centroids, clip.centroids),
        "background_kept": float(reading.background_name == case.reference.background),
        **appearance_scores(video, case, reading),
        **distractor_scores(reading.centroids, clip),
        **fbdm_scores(fbdm_records or [], clip),
    }
    return scores


def centroid_min_displacement(frame_side: int) -> float:
    """Centroid steps shorter than this (px) have no direction in MF, for frames of ``frame_side`` px."""
    return CENTROID_MIN_DISPLACEMENT * frame_side / REFERENCE_FRAME_SIDE


def subject_appearance(subject: str) -> tuple[str | None, str | None]:
    """(colour, shape) named by a toy subject such as ``"blue square"``; None for a word the world lacks."""
    words = subject.lower().split()
    colour = next((word for word in words if word in COLOURS), None)
    shape = next((word for word in words if word in SHAPES), None)
    return colour, shape


def toy_world_metrics(
    generated_frames: np.ndarray, reference_centroids: np.ndarray, target_subject: str
) -> dict[str, float]:
    """The sweep's toy checks (:data:`TOY_METRIC_NAMES`) of uint8 frames (T, H, W, 3) against the reference's
    centroid path (T, 2)."""
    reading = read_frames(generated_frames)
    generated_centroids = reading.centroids
    if generated_centroids.shape != reference_centroids.shape:
        raise ValueError(
            f"generated centroids {generated_centroids.shape} and reference centroids "
            f"{reference_centroids.shape} differ; compare videos with the same number of frames"
        )
    colour, shape = subject_appearance(target_subject)
    present = np.isfinite(generated_centroids).all(axis=1)
    return {
        "path_error": path_errors(generated_centroids, reference_centroids)["path_error"],
        "appearance_kept": float(reading.colour == colour and reading.shape == shape),
        "object_present": float(present.mean()),
        "centroid_mf": centroid_motion_fidelity(
            generated_centroids, reference_centroids, min(generated_frames.shape[1:3])
        ),
        "motion_extent": motion_extent(generated_centroids, reference_centroids),
    }


def centroid_motion_fidelity(generated: np.ndarray, reference: np.ndarray, frame_side: int = 32) -> float:
    """MF of one centroid tracklet (T, 2) against another; a frame without object (NaN) is a lost point.

    The two steps touching such a frame earn nothing and the others count, so one faint frame of an
    8-frame copy scores 5/7, not 0; a video without any object scores 0. Steps shorter than
    :func:`centroid_min_displacement` have no direction (the library's 0.5 px default is made for DAVIS).
    NaN when the reference itself shows no object somewhere: nothing to compare with.
    """
    if not np.isfinite(reference).all():
        return float("nan")
    present = np.isfinite(generated).all(axis=1)
    # Positions of frames without object are placeholders; visibility keeps their steps from counting.
    filled = np.where(present[:, None], generated, 0.0)
    return motion_fidelity(
        filled[None],
        reference[None],
        generated_visible=present[None],
        min_displacement=centroid_min_displacement(frame_side),
    ).score


def motion_extent(generated: np.ndarray, reference: np.ndarray) -> float:
    """How far the generated object went: its centroid path length (T, 2) over the reference's.

    1.0 covers the reference's distance; 0.6 is 60 % of it, however well the directions match. NaN
    positions (no object in that frame) are allowed: only steps whose two ends show an object in *both*
    videos are summed, so a faint frame shortens both paths alike. NaN when no such step is left or the
    reference does not move over them (no distance to compare with).
    """
    generated = np.asarray(generated, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if generated.shape != reference.shape or generated.ndim != 2 or generated.shape[1] != 2:
        raise ValueError(
            f"centroid paths have shapes {generated.shape} and {reference.shape}; expected two (T, 2) "
            "paths (x, y) over the same number of frames"
        )
    present = np.isfinite(generated).all(axis=1) & np.isfinite(reference).all(axis=1)
    counted = present[1:] & present[:-1]
    if not counted.any():
        return float("nan")
    generated_length = np.linalg.norm(np.diff(generated, axis=0)[counted], axis=1).sum()
    reference_length = np.linalg.norm(np.diff(reference, axis=0)[counted], axis=1).sum()
    if reference_length == 0:
        return float("nan")
    return float(generated_length / reference_length)


def reference_centroids(reference_frames: np.ndarray) -> np.ndarray:
    """(T, 2) centroid path of the object in uint8 reference frames (T, H, W, 3), NaN where none is found."""
    return read_frames(reference_frames).centroids


class ToyWorldMetrics:
    """The toy checks as extra metrics of an evaluation sweep (``attnkit-lmp eval --toy-metrics``): the
    reference's centroid path is read once per video, each generated video is scored against it."""

    name = "toy"

    def reference(self, frames: np.ndarray) -> np.ndarray:
        return reference_centroids(frames)

    def score(self, frames: np.ndarray, reference: np.ndarray, subject: str) -> dict[str, float]:
        return toy_world_metrics(frames, reference, subject)
