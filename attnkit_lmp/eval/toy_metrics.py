"""The toy world's checks of a motion transfer: does the object follow the reference's path, look as prompted?

Toy-world videos hold one coloured shape on a plain background, so two things can be read exactly with
the analytic classifier of :mod:`attnkit_lmp.toy.classify` (no learned model):

* ``path_error`` — mean distance in pixels between the object's centroid in the generated video and in
  the reference, over frames where both show an object (NaN when no frame does);
* ``appearance_kept`` — 1.0 when the generated object has the colour and shape of the *target* subject
  (e.g. "blue square"), else 0.0: motion was transferred without copying the reference's look;
* ``object_present`` — fraction of generated frames in which an object is found;
* ``centroid_mf`` — MF (the DMT formula) of the one centroid tracklet against the reference's, with a
  frame without object counting as lost (the two steps touching it earn nothing; the other steps still
  count): how the *object* moves, whatever the background does;
* ``motion_extent`` — the generated centroid path's length over the reference's (:func:`motion_extent`):
  MF scores directions only, so an object that follows the right directions over a fraction of the
  distance still gets full MF; this says how far it went.
"""

from __future__ import annotations

import numpy as np

TOY_METRIC_NAMES: tuple[str, ...] = (
    "path_error",
    "appearance_kept",
    "object_present",
    "centroid_mf",
    "motion_extent",
)
CENTROID_MIN_DISPLACEMENT = 0.25
"""Pixels per frame of a 32-px toy frame: the slowest held-out step is 0.4 px (the accelerating path's first).
Scaled with the frame side, as the world's motion is (:func:`centroid_min_displacement`)."""


def centroid_min_displacement(frame_side: int) -> float:
    """Centroid steps shorter than this (px) have no direction in MF, for frames of ``frame_side`` px."""
    from attnkit_lmp.toy.world import REFERENCE_FRAME_SIDE

    return CENTROID_MIN_DISPLACEMENT * frame_side / REFERENCE_FRAME_SIDE


def subject_appearance(subject: str) -> tuple[str | None, str | None]:
    """(colour, shape) named by a toy subject such as ``"blue square"``; None for a word the world lacks."""
    from attnkit_lmp.toy.world import COLOURS, SHAPES

    words = subject.lower().split()
    colour = next((word for word in words if word in COLOURS), None)
    shape = next((word for word in words if word in SHAPES), None)
    return colour, shape


def toy_world_metrics(
    generated_frames: np.ndarray, reference_centroids: np.ndarray, target_subject: str
) -> dict[str, float]:
    """The toy checks of uint8 frames (T, H, W, 3) against the reference's centroid path (T, 2)."""
    from attnkit_lmp.toy.classify import read_frames

    reading = read_frames(generated_frames)
    generated_centroids = reading.centroids
    if generated_centroids.shape != reference_centroids.shape:
        raise ValueError(
            f"generated centroids {generated_centroids.shape} and reference centroids "
            f"{reference_centroids.shape} differ; compare videos with the same number of frames"
        )
    both = np.isfinite(generated_centroids).all(axis=1) & np.isfinite(reference_centroids).all(axis=1)
    distances = np.linalg.norm(generated_centroids[both] - reference_centroids[both], axis=1)
    colour, shape = subject_appearance(target_subject)
    present = np.isfinite(generated_centroids).all(axis=1)
    return {
        "path_error": float(distances.mean()) if both.any() else float("nan"),
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
    from .motion_fidelity import motion_fidelity

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
    from attnkit_lmp.toy.classify import read_frames

    return read_frames(reference_frames).centroids
