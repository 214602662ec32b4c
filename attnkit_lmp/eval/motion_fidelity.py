"""Motion fidelity (MF): how well the motion of a generated video follows a reference, from point tracks.

The score is the one of DMT (Yatim et al. 2024) as METHOD.md writes it. Both videos are tracked on a grid
of points; a tracklet is one point's positions over time, shape (T, 2). For every tracklet take the
per-step displacements and normalise each to unit length; S[n, m] is the mean over time of the cosine
between generated tracklet n and reference tracklet m; MF is the mean over n of the max over m of S[n, m].

Three choices the formula leaves open, fixed here:

* **Zero displacement.** A step shorter than ``min_displacement`` pixels has no direction. Its unit
  vector is the zero vector, so it contributes cosine 0 to every pair, and it still counts in the mean
  over time. Standing still therefore earns no credit and no penalty, S stays in [-1, 1], and a pair
  that moves together only for a moment cannot reach S = 1 (as it would if static steps were dropped
  from the time mean).
* **Static tracklets.** A tracklet with no direction at any step carries no evidence about motion:
  its row of S is all zeros whatever the reference does, and its column of S would be a free 0 for
  every generated tracklet. Both are dropped: MF is the mean over *moving* generated tracklets of the
  best match among *moving* reference tracklets. Without the drop a static background would cap a
  perfect copy at the fraction of moving points, and lift the exact reversed motion from -1 to 0.
* **Lost points.** When visibility is given, a tracklet not visible in every frame is dropped too:
  its positions after the loss are not measurements, and reading them as standing still would again
  hand out free zeros. CoTracker estimates positions through occlusion and DMT scored all of them;
  to reproduce DMT exactly, pass no visibility for CoTracker tracks. Chained Lucas-Kanade cannot
  estimate a lost point, so pass its visibility.

If either video has no tracklet left, MF is 0.0 (no motion to compare) and the counts in the result
say so.

Tracks are pixel coordinates (x, y); cosines are invariant to a uniform rescale of either video, so
both need not have the same resolution, only the same aspect ratio and the same number of frames
(track a reference resized for generation as resized).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MIN_DISPLACEMENT = 0.5
"""Pixels per frame below which a step counts as standing still.

Above the sub-pixel jitter trackers report on static, flickering content; below the several pixels per
frame a moving subject covers at DAVIS resolution. Lower it for tiny videos whose subjects move slowly.
"""

DEFAULT_CHUNK_SIZE = 1024
"""Generated tracklets scored per block: bounds memory at chunk x M floats (55 x 55 grids: ~25 MB)."""


@dataclass(frozen=True)
class MotionFidelity:
    """The MF score of one generated video against one reference, with what it was computed over."""

    score: float
    """Mean over scored generated tracklets of their best mean cosine against a scored reference tracklet."""
    best_match_scores: np.ndarray
    """(num_generated_scored,) per scored generated tracklet n: max over scored reference m of S[n, m]."""
    num_generated_scored: int
    """Generated tracklets scored: moving at some step and, with visibility given, tracked in every frame."""
    num_generated: int
    num_reference_scored: int
    """Reference tracklets scored, on the same rule."""
    num_reference: int

    def to_dict(self) -> dict[str, float | int]:
        """The scalar fields, ready for a JSON line."""
        return {
            "motion_fidelity": self.score,
            "num_generated_scored": self.num_generated_scored,
            "num_generated": self.num_generated,
            "num_reference_scored": self.num_reference_scored,
            "num_reference": self.num_reference,
        }


def unit_displacements(tracks: np.ndarray, min_displacement: float = DEFAULT_MIN_DISPLACEMENT) -> np.ndarray:
    """Per-step displacement directions of (N, T, 2) tracks as (N, T - 1, 2) unit vectors.

    A step shorter than ``min_displacement`` pixels is the zero vector (see the module docstring).
    """
    tracks = _check_tracks(tracks, "tracks")
    displacements = np.diff(tracks.astype(np.float64), axis=1)
    lengths = np.linalg.norm(displacements, axis=-1, keepdims=True)
    # `> 0` keeps exact zeros out even when min_displacement is 0.
    has_direction = (lengths >= min_displacement) & (lengths > 0)
    return np.where(has_direction, displacements / np.where(has_direction, lengths, 1.0), 0.0)


def _tracked_throughout(visible: np.ndarray | None, tracks: np.ndarray, name: str) -> np.ndarray:
    """(N,) True for tracklets visible in every frame; all True when there is no visibility."""
    if visible is None:
        return np.ones(len(tracks), dtype=bool)
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != tracks.shape[:2]:
        raise ValueError(
            f"{name} has shape {visible.shape}, expected {tracks.shape[:2]} (one flag per track point); "
            "pass the `visible` array the tracker returned with these tracks"
        )
    return visible.all(axis=1)


def similarity_matrix(generated_directions: np.ndarray, reference_directions: np.ndarray) -> np.ndarray:
    """S[n, m]: mean over time of the cosine between unit displacements (N, T-1, 2) and (M, T-1, 2).

    Materialises the full (N, M) matrix; `motion_fidelity` reduces it block by block instead.
    """
    return _similarity_block(generated_directions, reference_directions)


def motion_fidelity(
    generated_tracks: np.ndarray,
    reference_tracks: np.ndarray,
    *,
    generated_visible: np.ndarray | None = None,
    reference_visible: np.ndarray | None = None,
    min_displacement: float = DEFAULT_MIN_DISPLACEMENT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> MotionFidelity:
    """MF of generated tracks (N, T, 2) against reference tracks (M, T, 2); see the module docstring.

    ``*_visible`` are the trackers' (N, T) / (M, T) visibility flags; tracklets lost in any frame are
    dropped. Memory stays at ``chunk_size`` x M floats however many tracklets there are.
    """
    generated_tracks = _check_tracks(generated_tracks, "generated_tracks")
    reference_tracks = _check_tracks(reference_tracks, "reference_tracks")
    if generated_tracks.shape[1] != reference_tracks.shape[1]:
        raise ValueError(
            f"generated tracks have {generated_tracks.shape[1]} frames, reference tracks "
            f"{reference_tracks.shape[1]}: MF compares step t with step t, so track both videos over the "
            "same number of frames (trim or resample one of them first)"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of tracklets, got {chunk_size}")

    generated_directions = unit_displacements(generated_tracks, min_displacement)
    reference_directions = unit_displacements(reference_tracks, min_displacement)
    generated_moving = generated_directions.any(axis=(1, 2)) & _tracked_throughout(
        generated_visible, generated_tracks, "generated_visible"
    )
    reference_moving = reference_directions.any(axis=(1, 2)) & _tracked_throughout(
        reference_visible, reference_tracks, "reference_visible"
    )
    generated_directions = generated_directions[generated_moving]
    reference_directions = reference_directions[reference_moving]

    if len(generated_directions) == 0 or len(reference_directions) == 0:
        best_match_scores = np.zeros(0)
        score = 0.0
    else:
        best_match_scores = np.concatenate(
            [
                _similarity_block(generated_directions[start : start + chunk_size], reference_directions).max(
                    axis=1
                )
                for start in range(0, len(generated_directions), chunk_size)
            ]
        )
        score = float(best_match_scores.mean())
    return MotionFidelity(
        score=score,
        best_match_scores=best_match_scores,
        num_generated_scored=int(generated_moving.sum()),
        num_generated=len(generated_tracks),
        num_reference_scored=int(reference_moving.sum()),
        num_reference=len(reference_tracks),
    )


def _similarity_block(generated_directions: np.ndarray, reference_directions: np.ndarray) -> np.ndarray:
    # mean_t <u_nt, v_mt> is one dot product of the flattened (T-1) x 2 direction sequences: a single
    # matmul, never an (N, M, T) tensor.
    num_steps = generated_directions.shape[1]
    if reference_directions.shape[1] != num_steps:
        raise ValueError(
            f"direction sequences differ in length ({num_steps} vs {reference_directions.shape[1]} steps); "
            "both must come from tracks over the same frames"
        )
    if num_steps == 0:
        return np.zeros((len(generated_directions), len(reference_directions)))
    generated_flat = generated_directions.reshape(len(generated_directions), -1)
    reference_flat = reference_directions.reshape(len(reference_directions), -1)
    return (generated_flat @ reference_flat.T) / num_steps


def _check_tracks(tracks: np.ndarray, name: str) -> np.ndarray:
    tracks = np.asarray(tracks)
    if tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise ValueError(
            f"{name} has shape {tracks.shape}, expected (num_tracklets, num_frames, 2) "
            "pixel positions (x, y); "
            "a CoTracker output (1, T, N, 2) must be transposed to (N, T, 2) first"
        )
    if tracks.shape[1] < 2:
        raise ValueError(f"{name} has {tracks.shape[1]} frame(s); motion needs at least 2 frames")
    if not np.isfinite(tracks).all():
        raise ValueError(
            f"{name} contains NaN or infinite positions; mark lost points invisible instead of NaN"
        )
    return tracks
