"""Trackers: LK grid tracks and centroid tracks follow known motion; CoTracker's adapter and its errors."""

import textwrap

import numpy as np
import pytest
import torch

from attnkit_lmp.eval.motion_fidelity import motion_fidelity
from attnkit_lmp.eval.synthetic import (
    circular_motion,
    constant_motion,
    moving_square,
    textured_translation,
)
from attnkit_lmp.eval.trackers import (
    CentroidTracker,
    CoTrackerTracker,
    LucasKanadeTracker,
    TrackerUnavailableError,
    box_mask,
    build_tracker,
    centroid_tracks,
    grid_points,
)

NUM_FRAMES = 16
VELOCITY = (1.5, 0.5)


@pytest.fixture(scope="module")
def lk_tracks():
    """LK tracks of textured videos moving with known motions, keyed by how they relate to VELOCITY."""
    motions = {
        "same": constant_motion(NUM_FRAMES, VELOCITY),
        "reversed": constant_motion(NUM_FRAMES, (-VELOCITY[0], -VELOCITY[1])),
        "orthogonal": constant_motion(NUM_FRAMES, (-VELOCITY[1], VELOCITY[0])),
        "circular": circular_motion(NUM_FRAMES, speed=1.5),
    }
    tracker = LucasKanadeTracker()
    # Different textures per video: MF must come from the motion, not from the content.
    return {
        name: tracker.track(textured_translation(steps, seed=seed), grid_size=20)
        for seed, (name, steps) in enumerate(motions.items())
    }


def mf(generated, reference):
    return motion_fidelity(
        generated.tracks,
        reference.tracks,
        generated_visible=generated.visible,
        reference_visible=reference.visible,
    )


def test_grid_points_cover_the_frame_row_by_row():
    points = grid_points(height=40, width=80, grid_size=4)
    assert points.shape == (16, 2)
    assert points[:, 0].min() > 0 and points[:, 0].max() < 79
    assert points[:, 1].min() > 0 and points[:, 1].max() < 39
    assert points[1, 0] - points[0, 0] == pytest.approx(20.0)
    assert points[4, 1] - points[0, 1] == pytest.approx(10.0)


def test_lk_follows_a_known_translation(lk_tracks):
    tracks, visible = lk_tracks["same"]
    assert tracks.shape == (400, NUM_FRAMES, 2) and tracks.dtype == np.float32
    assert visible.shape == (400, NUM_FRAMES) and visible.dtype == bool
    steps = np.diff(tracks, axis=1)[visible[:, 1:]]
    np.testing.assert_allclose(np.median(steps, axis=0), VELOCITY, atol=0.05)
    assert np.abs(steps - VELOCITY).max(axis=1).mean() < 0.2


def test_lk_loses_points_that_leave_the_frame_and_keeps_the_others(lk_tracks):
    tracks, visible = lk_tracks["same"]
    # Content moves right by 22 px over the video: the right-hand grid columns leave the 64 px frame.
    start_x, start_y = tracks[:, 0, 0], tracks[:, 0, 1]
    leaving = start_x + 22.5 > 63.5
    assert not visible[leaving, -1].any()
    # Points that stay well inside (LK's window needs room) are kept.
    staying = (start_x > 8) & (start_x + 22.5 < 56) & (start_y > 8) & (start_y + 7.5 < 56)
    assert visible[staying, -1].mean() > 0.9


def test_lk_loses_points_when_the_content_is_replaced():
    first = textured_translation(constant_motion(4, (1, 0)), seed=0)
    other = textured_translation(constant_motion(4, (1, 0)), seed=99)
    tracks, visible = LucasKanadeTracker().track(np.concatenate([first, other]), grid_size=10)
    assert visible[:, 3].mean() > 0.8
    assert visible[:, -1].mean() < 0.3
    lost = ~visible[:, 4]
    assert (tracks[lost, 4:] == tracks[lost, 3:4]).all(), "a lost point keeps its last position"


def tracked_step_fraction(points):
    """Share of (point, step) pairs tracked at both ends: the most MF can credit, as lost steps earn 0."""
    return float((points.visible[:, 1:] & points.visible[:, :-1]).mean())


def test_lk_mf_of_the_same_motion_credits_every_tracked_step(lk_tracks):
    # Content moves 22 px right over the video, so the right-hand columns leave the frame and are lost.
    most = tracked_step_fraction(lk_tracks["same"])
    assert 0.7 < most < 0.8
    assert mf(lk_tracks["same"], lk_tracks["same"]).score == pytest.approx(most, abs=1e-3)


def test_lk_mf_of_the_same_motion_on_another_texture_is_near_its_most(lk_tracks):
    other_texture = LucasKanadeTracker().track(
        textured_translation(constant_motion(NUM_FRAMES, VELOCITY), seed=42), grid_size=20
    )
    assert mf(other_texture, lk_tracks["same"]).score > 0.95 * tracked_step_fraction(other_texture)


def test_lk_mf_of_the_reversed_motion_is_minus_its_most(lk_tracks):
    for generated, reference in [("same", "reversed"), ("reversed", "same")]:
        most = tracked_step_fraction(lk_tracks[generated])
        assert mf(lk_tracks[generated], lk_tracks[reference]).score < -0.95 * most


def test_lk_mf_is_zero_for_orthogonal_or_unrelated_motion(lk_tracks):
    for unrelated in ("orthogonal", "circular"):
        assert abs(mf(lk_tracks["same"], lk_tracks[unrelated]).score) < 0.15, unrelated
        assert abs(mf(lk_tracks[unrelated], lk_tracks["same"]).score) < 0.15, unrelated


def test_lk_mf_of_a_still_video_is_zero_with_no_moving_tracklets(lk_tracks):
    still = LucasKanadeTracker().track(textured_translation(constant_motion(NUM_FRAMES, (0, 0))), 20)
    result = mf(still, lk_tracks["same"])
    assert result.score == 0.0 and result.num_generated_moving == 0


def test_lk_rejects_float_frames_with_a_conversion_hint():
    with pytest.raises(ValueError, match="expected uint8"):
        LucasKanadeTracker().track(np.zeros((3, 8, 8, 3), dtype=np.float32), grid_size=2)


def test_centroid_of_masks_follows_the_square():
    steps = constant_motion(6, (2, -1))
    frames, masks = moving_square(steps, side=10, start=(20, 30))
    tracks, visible = centroid_tracks(masks)
    assert tracks.shape == (1, 6, 2) and visible.all()
    expected = np.array([24.5, 34.5]) + np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    np.testing.assert_allclose(tracks[0], expected)


def test_centroid_tracker_segments_the_shape_from_a_plain_background():
    frames, masks = moving_square(constant_motion(6, (2, 1)))
    from_frames = CentroidTracker().track(frames, grid_size=55)
    np.testing.assert_allclose(from_frames.tracks, centroid_tracks(masks).tracks)


def test_centroid_holds_position_and_is_invisible_on_empty_masks():
    frames, masks = moving_square(constant_motion(5, (3, 0)))
    masks[0] = False
    masks[3] = False
    tracks, visible = centroid_tracks(masks)
    assert visible[0].tolist() == [False, True, True, False, True]
    np.testing.assert_allclose(tracks[0, 0], tracks[0, 1])
    np.testing.assert_allclose(tracks[0, 3], tracks[0, 2])


def test_centroid_mf_separates_same_and_reversed_motion():
    steps = circular_motion(12, speed=2, turns=0.5)
    _, masks = moving_square(steps)
    _, reversed_masks = moving_square(-steps)
    same, reversed_motion = centroid_tracks(masks), centroid_tracks(reversed_masks)
    assert mf(same, same).score > 0.95
    assert mf(same, reversed_motion).score < -0.9


def test_centroid_tracker_rejects_masks_of_the_wrong_shape():
    tracker = CentroidTracker(segmenter=lambda frames: np.ones((2, 3, 3), dtype=bool))
    with pytest.raises(ValueError, match="segmenter returned masks of shape"):
        tracker.track(np.zeros((4, 8, 8, 3), dtype=np.uint8))


class FakeCoTracker:
    """Answers like CoTracker's predictor: tracks (1, T, N, 2) and visibility (1, T, N[, 1])."""

    def __init__(self, visibility_has_channel=False, visibility_dtype=torch.bool):
        self.visibility_has_channel = visibility_has_channel
        self.visibility_dtype = visibility_dtype
        self.received = None

    def __call__(self, video, grid_size, segm_mask=None):
        self.received = (tuple(video.shape), video.dtype, float(video.max()), grid_size)
        self.segm_mask = segm_mask
        _, num_frames, _, _, _ = video.shape
        num_points = grid_size * grid_size
        # Point n at frame t sits at (x, y) = (n, 100 t): lets the test check the transpose.
        tracks = torch.zeros(1, num_frames, num_points, 2)
        tracks[..., 0] = torch.arange(num_points, dtype=torch.float32)
        tracks[..., 1] = 100 * torch.arange(num_frames, dtype=torch.float32)[:, None]
        visibility = torch.ones(1, num_frames, num_points)
        visibility[0, -1, 0] = 0.2
        if self.visibility_has_channel:
            visibility = visibility[..., None]
        if self.visibility_dtype == torch.bool:
            visibility = visibility > 0.5
        return tracks, visibility


@pytest.mark.parametrize("visibility_has_channel", [False, True])
@pytest.mark.parametrize("visibility_dtype", [torch.bool, torch.float32])
def test_cotracker_adapter_converts_layouts(visibility_has_channel, visibility_dtype):
    fake = FakeCoTracker(visibility_has_channel, visibility_dtype)
    frames = np.full((5, 12, 16, 3), 255, dtype=np.uint8)
    tracks, visible = CoTrackerTracker(fake).track(frames, grid_size=3)
    assert fake.received == ((1, 5, 3, 12, 16), torch.float32, 255.0, 3)
    assert tracks.shape == (9, 5, 2) and tracks.dtype == np.float32
    assert visible.shape == (9, 5) and visible.dtype == bool
    assert tracks[4, 2].tolist() == [4.0, 200.0]
    assert not visible[0, -1] and visible.sum() == 9 * 5 - 1


def test_cotracker_adapter_passes_the_mask_as_cotrackers_segm_mask():
    fake = FakeCoTracker()
    frames = np.zeros((5, 12, 16, 3), dtype=np.uint8)
    mask = np.zeros((12, 16), dtype=bool)
    mask[2:5, 3:9] = True
    CoTrackerTracker(fake).track(frames, grid_size=3, mask=mask)
    assert tuple(fake.segm_mask.shape) == (1, 1, 12, 16) and fake.segm_mask.dtype == torch.float32
    assert fake.segm_mask.sum() == 18
    CoTrackerTracker(fake).track(frames, grid_size=3)
    assert fake.segm_mask is None


def test_box_mask_is_the_inclusive_bounding_box_of_the_foreground():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2, 3] = mask[6, 8] = True
    box = box_mask(mask)
    assert box.sum() == 5 * 6 and box[2:7, 3:9].all()
    with pytest.raises(ValueError, match="some foreground"):
        box_mask(np.zeros((4, 4), dtype=bool))


def test_lk_with_a_mask_tracks_only_the_grid_points_inside_it():
    frames = textured_translation(constant_motion(4, (1, 0)), seed=0)
    mask = np.zeros(frames.shape[1:3], dtype=bool)
    mask[:32, :32] = True  # the top-left quarter
    tracks, visible = LucasKanadeTracker().track(frames, grid_size=8, mask=mask)
    assert tracks.shape == (16, 4, 2) and visible.shape == (16, 4)
    assert (tracks[:, 0] < 32).all()
    with pytest.raises(ValueError, match="no point of the grid falls inside the mask"):
        LucasKanadeTracker().track(frames, grid_size=2, mask=np.pad(np.ones((2, 2), bool), ((0, 62), (0, 62))))


def test_cotracker_adapter_rejects_unexpected_output_shapes():
    def wrong_layout(video, grid_size):
        return torch.zeros(1, grid_size**2, video.shape[1], 2), torch.ones(1, grid_size**2, video.shape[1])

    with pytest.raises(ValueError, match=r"expected \(1, 5, N, 2\)"):
        CoTrackerTracker(wrong_layout).track(np.zeros((5, 8, 8, 3), dtype=np.uint8), grid_size=2)


def test_missing_cotracker_checkpoint_says_what_to_download(tmp_path):
    missing = tmp_path / "scaled_offline.pth"
    with pytest.raises(TrackerUnavailableError) as error:
        CoTrackerTracker.from_checkpoint(missing, repo=tmp_path)
    message = str(error.value)
    assert str(missing) in message
    assert "huggingface.co/facebook/cotracker3" in message and "co-tracker" in message


def test_a_folder_without_hubconf_is_not_taken_for_the_cotracker_code(tmp_path):
    checkpoint = tmp_path / "scaled_offline.pth"
    torch.save({}, checkpoint)
    with pytest.raises(TrackerUnavailableError, match="has no hubconf.py"):
        CoTrackerTracker.from_checkpoint(checkpoint, repo=tmp_path / "not-a-clone")


def test_cotracker_loads_weights_through_a_local_repo_hubconf(tmp_path):
    repo = tmp_path / "co-tracker"
    repo.mkdir()
    (repo / "hubconf.py").write_text(textwrap.dedent("""
            import torch

            class Predictor(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.model = torch.nn.Linear(2, 2)

                def forward(self, video, grid_size):
                    num_frames = video.shape[1]
                    tracks = self.model.bias.expand(1, num_frames, grid_size**2, 2)
                    return tracks, torch.ones(1, num_frames, grid_size**2, dtype=torch.bool)

            def cotracker3_offline(*, pretrained=True, **kwargs):
                assert not pretrained, "weights must come from the local checkpoint"
                return Predictor()
            """))
    weights = torch.nn.Linear(2, 2).state_dict()
    weights["bias"] = torch.tensor([3.0, 4.0])
    torch.save({"model": weights}, tmp_path / "scaled_offline.pth")
    tracker = CoTrackerTracker.from_checkpoint(tmp_path / "scaled_offline.pth", repo=repo)
    tracks, visible = tracker.track(np.zeros((3, 8, 8, 3), dtype=np.uint8), grid_size=2)
    assert tracks.shape == (4, 3, 2) and visible.all()
    assert tracks[0, 0].tolist() == [3.0, 4.0]


def test_build_tracker_by_name():
    assert isinstance(build_tracker("lucas-kanade", window_size=9), LucasKanadeTracker)
    assert isinstance(build_tracker("centroid"), CentroidTracker)
    with pytest.raises(ValueError, match="unknown tracker 'raft'; expected one of centroid, cotracker"):
        build_tracker("raft")
