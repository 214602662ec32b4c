"""Motion fidelity (MF): how well the motion of a generated video follows a reference, from point tracks.

The score is DMT's (Yatim et al. 2024), as docs/method.md writes it and, in which tracklets count, as DMT's
public code computes it. Both videos are tracked on a grid of points; a tracklet is one point's
positions over time, shape (T, 2). For every tracklet take the per-step displacements and normalise
each to unit length; S[n, m] is the mean over time of the cosine between generated tracklet n and
reference tracklet m; MF is the mean over *every* generated tracklet n of the max over reference
tracklets m of S[n, m].

Two choices the formula leaves open, fixed here so that neither standing still nor being lost by the
tracker can raise a score:

* **A step without a direction earns cosine 0**, and still counts in the mean over time. A step has
  no direction when it is shorter than ``min_displacement`` pixels (standing still) or, with
  visibility given, when the point is lost at either end of it (its position there is not a
  measurement). No generated tracklet is dropped: one that stands still or is lost stays in the mean
  over n and earns only what its tracked, moving steps earn. A generated video cannot raise its score
  by freezing, or by being lost, where the reference moves; one untracked frame costs the two steps
  that touch it, not the clip. A static background earns nothing, so a copy of a video whose
  background stands still scores the share of its steps that move, not 1.
* **A reference tracklet lost in some frame is no candidate** (with visibility given): it is not a
  whole reference motion, and matching against its tracked part alone would reward unrelated motion
  that happens to agree with it for a few frames. Static reference tracklets are candidates, as in
  DMT: moving where the reference stands still is unrelated motion, S = 0.

DMT's code normalises every step, the tracker's sub-pixel jitter on static content included, so
static points earn the chance agreement of their jitter with some other point's jitter (the more
tracklets and the fewer frames, the more); an exactly zero step divides 0 by 0 and makes the whole
score NaN; it scores every point, visible or not; and it excludes the pair of tracklets with the same
index. `dmt_motion_fidelity` computes that score, for comparing with numbers published with DMT's
code; docs/evaluation.md lists every difference.

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

MOTION_FIDELITY_VERSION = 2
"""The rules' version, recorded with every sweep: 2 scores every generated tracklet (1 dropped static and
lost ones). Bump it with any change that moves scores, so that a sweep refuses to mix old and new numbers."""

DEFAULT_CHUNK_SIZE = 1024
"""Generated tracklets scored per block: bounds memory at chunk x M floats (55 x 55 grids: ~25 MB)."""


@dataclass(frozen=True)
class MotionFidelity:
    """The MF score of one generated video against one reference, with what it was computed over."""

    score: float
    """Mean over every generated tracklet of its best mean cosine against a reference tracklet."""
    best_match_scores: np.ndarray
    """(num_generated,) per generated tracklet n: max over reference m of S[n, m]."""
    num_generated_moving: int
    """Generated tracklets with at least one step that has a direction (the others earn exactly 0)."""
    num_generated: int
    num_reference_candidates: int
    """Reference tracklets matched against: those tracked in every frame (all without visibility)."""
    num_reference_moving: int
    """Reference candidates with at least one step that has a direction."""
    num_reference: int

    def to_dict(self) -> dict[str, float | int]:
        """The scalar fields, ready for a JSON line."""
        return {
            "motion_fidelity": self.score,
            "num_generated_moving": self.num_generated_moving,
            "num_generated": self.num_generated,
            "num_reference_candidates": self.num_reference_candidates,
            "num_reference_moving": self.num_reference_moving,
            "num_reference": self.num_reference,
        }


def unit_displacements(
    tracks: np.ndarray,
    min_displacement: float = DEFAULT_MIN_DISPLACEMENT,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """Per-step displacement directions of (N, T, 2) tracks as (N, T - 1, 2) unit vectors.

    A step shorter than ``min_displacement`` pixels, or with a point invisible at either end when
    ``visible`` (N, T) is given, is the zero vector (see the module docstring).
    """
    tracks = _check_tracks(tracks, "tracks")
    displacements = np.diff(tracks.astype(np.float64), axis=1)
    lengths = np.linalg.norm(displacements, axis=-1, keepdims=True)
    # `> 0` keeps exact zeros out even when min_displacement is 0.
    has_direction = (lengths >= min_displacement) & (lengths > 0)
    if visible is not None:
        visible = _check_visible(visible, tracks, "visible")
        has_direction &= (visible[:, 1:] & visible[:, :-1])[..., None]
    return np.where(has_direction, displacements / np.where(has_direction, lengths, 1.0), 0.0)


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

    ``*_visible`` are the trackers' (N, T) / (M, T) visibility flags: a generated step with a lost end
    earns 0; a reference tracklet lost in some frame is no candidate.
    Memory stays at ``chunk_size`` x M floats however many tracklets there are.
    """
    generated_tracks, reference_tracks = _check_pair(generated_tracks, reference_tracks)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of tracklets, got {chunk_size}")
    if generated_visible is not None:
        generated_visible = _check_visible(generated_visible, generated_tracks, "generated_visible")
    generated_directions = unit_displacements(generated_tracks, min_displacement, generated_visible)
    reference_directions = unit_displacements(reference_tracks, min_displacement)
    if reference_visible is not None:
        tracked = _check_visible(reference_visible, reference_tracks, "reference_visible").all(axis=1)
        reference_directions = reference_directions[tracked]
    if len(reference_directions) == 0:
        # Nothing to follow: every generated tracklet earns 0, as against a static reference.
        best_match_scores = np.zeros(len(generated_directions))
    else:
        best_match_scores = np.concatenate(
            [
                _similarity_block(generated_directions[start : start + chunk_size], reference_directions).max(
                    axis=1
                )
                for start in range(0, len(generated_directions), chunk_size)
            ]
        )
    return MotionFidelity(
        score=float(best_match_scores.mean()),
        best_match_scores=best_match_scores,
        num_generated_moving=int(generated_directions.any(axis=(1, 2)).sum()),
        num_generated=len(generated_tracks),
        num_reference_candidates=len(reference_directions),
        num_reference_moving=int(reference_directions.any(axis=(1, 2)).sum()),
        num_reference=len(reference_tracks),
    )


def dmt_motion_fidelity(
    generated_tracks: np.ndarray, reference_tracks: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> float:
    """MF as DMT's public code computes it, for comparing with numbers published with that code.

    Every step of non-zero length is normalised, sub-pixel tracker jitter included; the pair (n, n) is
    excluded (DMT subtracts the identity from S before the max), which needs N = M; all points count,
    visible or not. One guard only: an exactly zero step is the zero vector, where DMT's code divides
    0 by 0 and returns NaN for the whole clip.
    """
    generated_tracks, reference_tracks = _check_pair(generated_tracks, reference_tracks)
    if len(generated_tracks) != len(reference_tracks):
        raise ValueError(
            f"DMT's score excludes the pair of tracklets with the same index, so it needs as many generated "
            f"tracklets as reference ones (got {len(generated_tracks)} and {len(reference_tracks)}); track "
            "both videos on the same grid"
        )
    generated_directions = unit_displacements(generated_tracks, min_displacement=0.0)
    reference_directions = unit_displacements(reference_tracks, min_displacement=0.0)
    best = []
    for start in range(0, len(generated_directions), chunk_size):
        block = _similarity_block(generated_directions[start : start + chunk_size], reference_directions)
        rows = np.arange(len(block))
        block[rows, start + rows] -= 1.0
        best.append(block.max(axis=1))
    return float(np.concatenate(best).mean())


def _similarity_block(generated_directions: np.ndarray, reference_directions: np.ndarray) -> np.ndarray:
    # mean_t <u_nt, v_mt> is one dot product of the flattened (T-1) x 2 direction sequences: a single
    # matmul, never an (N, M, T) tensor.
    num_steps = generated_directions.shape[1]
    if reference_directions.shape[1] != num_steps:
        raise ValueError(
            f"direction sequences differ in length ({num_steps} vs {reference_directions.shape[1]} steps); "
            "both must come from tracks over the same frames"
        )
    generated_flat = generated_directions.reshape(len(generated_directions), -1)
    reference_flat = reference_directions.reshape(len(reference_directions), -1)
    return (generated_flat @ reference_flat.T) / num_steps


def _check_pair(generated_tracks: np.ndarray, reference_tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    generated_tracks = _check_tracks(generated_tracks, "generated_tracks")
    reference_tracks = _check_tracks(reference_tracks, "reference_tracks")
    if generated_tracks.shape[1] != reference_tracks.shape[1]:
        raise ValueError(
            f"generated tracks have {generated_tracks.shape[1]} frames, reference tracks "
            f"{reference_tracks.shape[1]}: MF compares step t with step t, so track both videos over the "
            "same number of frames (trim or resample one of them first)"
        )
    return generated_tracks, reference_tracks


def _check_visible(visible: np.ndarray, tracks: np.ndarray, name: str) -> np.ndarray:
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != tracks.shape[:2]:
        raise ValueError(
            f"{name} has shape {visible.shape}, expected {tracks.shape[:2]} (one flag per track point); "
            "pass the `visible` array the tracker returned with these tracks"
        )
    return visible


def _check_tracks(tracks: np.ndarray, name: str) -> np.ndarray:
    tracks = np.asarray(tracks)
    if tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise ValueError(
            f"{name} has shape {tracks.shape}, expected (num_tracklets, num_frames, 2) "
            "pixel positions (x, y); "
            "a CoTracker output (1, T, N, 2) must be transposed to (N, T, 2) first"
        )
    if len(tracks) == 0:
        raise ValueError(f"{name} holds no tracklet; a tracker returns at least one point per video")
    if tracks.shape[1] < 2:
        raise ValueError(f"{name} has {tracks.shape[1]} frame(s); motion needs at least 2 frames")
    if not np.isfinite(tracks).all():
        raise ValueError(
            f"{name} contains NaN or infinite positions; mark lost points invisible instead of NaN"
        )
    return tracks
