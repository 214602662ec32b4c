"""Reading reference videos (mp4, gif, frame folder, tensor), the sampling policy, resizing, writing."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from attnkit_lmp.video_io import (
    to_uint8,
    VideoReadError,
    load_frames,
    read_video,
    resize_and_crop,
    sample_frames,
    side_by_side,
    write_frames,
    write_video,
)

from .conftest import moving_square_video


def test_gif_mp4_folder_and_tensor_give_the_same_frames(reference_gif, reference_mp4, tmp_path):
    video = moving_square_video()
    for index, frame in enumerate(video):
        iio.imwrite(tmp_path / f"frame{index}.png", frame)
    expected = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255
    for source in (reference_gif, tmp_path, torch.from_numpy(video), expected):
        torch.testing.assert_close(load_frames(source), expected, atol=2 / 255, rtol=0)
    assert (load_frames(reference_mp4) - expected).abs().mean() < 0.05  # lossy codec


def test_folder_frames_are_ordered_by_number(tmp_path):
    for index in (10, 2, 1):
        iio.imwrite(tmp_path / f"f{index}.png", np.full((4, 4, 3), index, dtype=np.uint8))
    assert load_frames(tmp_path)[:, 0, 0, 0].mul(255).round().tolist() == [1, 2, 10]


def test_uniform_sampling_spans_the_clip_and_first_keeps_the_start():
    frames = torch.arange(12.0).reshape(12, 1, 1, 1).expand(12, 3, 2, 2)
    assert sample_frames(frames, 5, "uniform")[:, 0, 0, 0].tolist() == [0, 3, 6, 8, 11]
    assert sample_frames(frames, 5, "first")[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_wrong_size_is_resized_to_cover_then_centre_cropped():
    frames = torch.zeros(1, 3, 20, 40)
    frames[:, :, :, 15:25] = 1  # a bright vertical band in the middle
    out = resize_and_crop(frames, 10, 10)
    assert out.shape == (1, 3, 10, 10)
    assert out[0, 0, :, 5].min() > 0.9 and out[0, 0, :, 0].max() < 0.1


def test_read_video_returns_the_model_geometry(reference_gif):
    frames = read_video(reference_gif, num_frames=9, height=32, width=32)
    assert frames.shape == (9, 3, 32, 32) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1


def test_unreadable_video_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    with pytest.raises(VideoReadError, match=r"cannot read reference video .*broken\.mp4"):
        load_frames(broken)
    with pytest.raises(VideoReadError, match="does not exist"):
        load_frames(tmp_path / "missing.mp4")
    with pytest.raises(VideoReadError, match="no image frames"):
        load_frames(_empty_dir(tmp_path))


def _empty_dir(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_too_short_video_is_a_clear_error(reference_gif):
    with pytest.raises(VideoReadError, match=r"has 12 frames but the model generates 49"):
        read_video(reference_gif, num_frames=49, height=32, width=32)


def test_frames_of_an_impossible_shape_are_a_clear_error():
    with pytest.raises(VideoReadError, match=r"expected 4 dimensions"):
        load_frames(torch.rand(3, 32, 32))
    with pytest.raises(VideoReadError, match=r"cannot find the colour channels"):
        load_frames(torch.rand(9, 7, 32, 32))
    with pytest.raises(VideoReadError, match=r"must be in \[0, 1\]"):
        load_frames(torch.rand(9, 3, 8, 8) * 255)


def test_written_mp4_and_gif_read_back(tmp_path):
    frames = torch.from_numpy(moving_square_video(9, 32, 32)).permute(0, 3, 1, 2).float() / 255
    for name in ("out.mp4", "out.gif"):
        path = write_video(tmp_path / name, frames, fps=8, upscale=2)
        assert load_frames(path).shape == (9, 3, 64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gif", "out.mp4"]  # no temp files left


def test_written_frames_read_back_exactly_in_order(tmp_path):
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(12, 3, 5, 7, generator=generator)  # odd sizes, every level: nothing is lost
    folder = write_frames(tmp_path / "frames", frames)
    assert [p.name for p in sorted(folder.iterdir())][:2] == ["00000.png", "00001.png"]
    assert torch.equal(load_frames(folder), torch.from_numpy(to_uint8(frames)).permute(0, 3, 1, 2).float() / 255)


def test_side_by_side_puts_the_reference_left():
    left, right = torch.zeros(9, 3, 16, 16), torch.ones(9, 3, 32, 32)
    both = side_by_side(left, right, gap=2)
    assert both.shape == (9, 3, 32, 66)
    assert both[..., :32].max() == 0 and both[..., 34:].min() == 1


def test_to_uint8_takes_either_layout_as_tensor_or_array_and_rounds_to_the_nearest_level():
    levels = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 0.2, 1.0, 1.7, -0.3])
    channels_first = levels.view(1, 1, 1, -1).expand(2, 3, 2, -1).contiguous()
    expected = np.array([0, 0, 2, 51, 255, 255, 0], dtype=np.uint8)  # halves round to even
    for frames in (channels_first, channels_first.numpy(), channels_first.permute(0, 2, 3, 1).numpy()):
        video = to_uint8(frames)
        assert video.shape == (2, 2, 7, 3) and video.dtype == np.uint8
        assert (video[0, 0, :, 0] == expected).all()
    already = to_uint8(channels_first.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(to_uint8(torch.from_numpy(already)), already)
    assert to_uint8(already, upscale=2).shape == (2, 4, 14, 3)


def test_to_uint8_refuses_frames_without_three_channels():
    with pytest.raises(ValueError, match=r"\(F, 3, H, W\) or \(F, H, W, 3\)"):
        to_uint8(np.zeros((2, 4, 4, 4), dtype=np.float32))
