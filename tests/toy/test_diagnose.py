"""The noise-level diagnosis denoises noised clips with the model: exact with an x0 oracle, one row per level."""

import numpy as np
import pytest
import torch

from attnkit_lmp.toy.cli import main as toy_main
from attnkit_lmp.toy.diagnose import denoise_from, motion_kept_by_level
from attnkit_lmp.toy.model import build_toy_pipeline
from attnkit_lmp.toy.world import WorldConfig, random_clip_spec, render_clip
from tiny_toys import TINY_MODEL, TINY_WAN, saved_toy_pipeline


class CleanClipOracle:
    """Stands in for the transformer's forward: predicts the true clean clip (x0) for every row.

    ``clean`` is in the world's (B, F, C, H, W) layout; ``channels_first`` answers in Wan's (B, C, F, H, W).
    """

    def __init__(self, clean, channels_first=False):
        self.clean = clean.transpose(1, 2) if channels_first else clean
        self.calls = 0

    def __call__(self, hidden_states, **_):
        self.calls += 1
        return (self.clean.repeat(hidden_states.shape[0] // self.clean.shape[0], 1, 1, 1, 1),)


@pytest.fixture(scope="module")
def pipeline():
    pipe = build_toy_pipeline(TINY_MODEL, seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def wan_pipeline(tmp_path_factory):
    return saved_toy_pipeline(TINY_WAN, tmp_path_factory.mktemp("wan_toy"))


def _clean_clips(count, num_frames=4):
    world = WorldConfig(height=16, width=16, num_frames=num_frames, object_size=6)
    clips = [render_clip(random_clip_spec(seed, "train"), world) for seed in range(count)]
    frames = torch.from_numpy(np.stack([clip.frames for clip in clips])).float().div(127.5).sub(1.0)
    return clips, frames.permute(0, 1, 4, 2, 3).contiguous()


@pytest.mark.parametrize("level", [100, 600, 999])
def test_with_a_perfect_x0_model_every_level_returns_the_clean_clip(pipeline, level, monkeypatch):
    clips, clean = _clean_clips(2)
    oracle = CleanClipOracle(clean)
    monkeypatch.setattr(pipeline.transformer, "forward", oracle)
    frames = denoise_from(
        pipeline, clean, [clip.prompt for clip in clips], level, 10, 4.0, torch.Generator().manual_seed(0)
    )
    np.testing.assert_allclose(frames, (clean.permute(0, 1, 3, 4, 2).numpy() + 1) / 2, atol=1e-4)
    assert 0 < oracle.calls <= 10


@pytest.mark.parametrize("level", [300, 600, 999])  # the Wan toy's shifted schedule starts at 251 for 10 steps
def test_wan_toy_with_a_perfect_x0_model_every_level_returns_the_clean_clip(wan_pipeline, level, monkeypatch):
    clips, clean = _clean_clips(2, num_frames=5)
    oracle = CleanClipOracle(clean, channels_first=True)
    monkeypatch.setattr(wan_pipeline.transformer, "forward", oracle)
    frames = denoise_from(
        wan_pipeline, clean, [clip.prompt for clip in clips], level, 10, 4.0, torch.Generator().manual_seed(0)
    )
    np.testing.assert_allclose(frames, (clean.permute(0, 1, 3, 4, 2).numpy() + 1) / 2, atol=1e-4)
    assert 0 < oracle.calls <= 10


def test_higher_levels_run_more_denoising_steps(pipeline, monkeypatch):
    clips, clean = _clean_clips(1)
    calls = {}
    for level in (300, 999):
        oracle = CleanClipOracle(clean)
        with monkeypatch.context() as patch:
            patch.setattr(pipeline.transformer, "forward", oracle)
            denoise_from(pipeline, clean, [clips[0].prompt], level, 10, 4.0, torch.Generator().manual_seed(0))
        calls[level] = oracle.calls
    assert calls[999] == 10 and 0 < calls[300] < calls[999]


def test_a_level_below_every_timestep_is_a_clear_error(pipeline):
    clips, clean = _clean_clips(1)
    with pytest.raises(ValueError, match="level=-1 is below every scheduled timestep"):
        denoise_from(pipeline, clean, [clips[0].prompt], -1, 10, 4.0, torch.Generator().manual_seed(0))


def test_report_has_one_row_per_level_with_rates_in_range(pipeline):
    rows = motion_kept_by_level(pipeline, levels=(400, 999), num_clips=2, num_inference_steps=3)
    assert [row["level"] for row in rows] == [400, 999]
    for row in rows:
        for rate in ("coherent_rate", "present_rate", "colour_rate"):
            assert 0.0 <= row[rate] <= 1.0


def test_cli_prints_the_table(tmp_path, pipeline, capsys):
    pipeline.save_pretrained(tmp_path / "model")
    code = toy_main(["diagnose", "--model", str(tmp_path / "model"), "--levels", "999", "--clips", "1", "--steps", "2"])
    assert code == 0
    assert "path error px" in capsys.readouterr().out
