"""The Wan-architecture toy: identity VAE, stock WanPipeline loading, the shared training loop, and the
prompt encoding and noise path training uses being the ones the pipeline uses at generation."""

import json

import pytest
import torch
from diffusers import WanPipeline

from attnkit_lmp.toy.cli import main as toy_main
from attnkit_lmp.toy.denoiser import toy_denoiser
from attnkit_lmp.toy.model import ToyModelConfig, build_toy_pipeline, generation_kwargs, toy_config_of
from attnkit_lmp.toy.train import CheckpointError, TrainConfig, train
from attnkit_lmp.toy.wan_model import build_identity_wan_vae
from tiny_toys import TINY_MODEL as TINY_COGVIDEOX
from tiny_toys import TINY_WAN


def _train(out, steps, **overrides):
    settings = dict(
        seed=0, model_config=TINY_WAN, train_config=TrainConfig(batch_size=2), checkpoint_every=1, progress=False
    )
    return train(out, steps, **(settings | overrides))


def test_identity_vae_returns_the_clip_through_encode_and_decode():
    vae = build_identity_wan_vae(ToyModelConfig(architecture="wan", num_frames=9))
    clip = torch.rand(2, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latent = vae.encode(clip).latent_dist
        assert latent.mode().shape == clip.shape  # no spatial or temporal compression
        torch.testing.assert_close(latent.mode(), clip, atol=1e-4, rtol=0)
        torch.testing.assert_close(latent.sample(), clip, atol=1e-4, rtol=0)
        torch.testing.assert_close(vae.decode(clip).sample, clip, atol=1e-4, rtol=0)


def test_wan_frame_count_must_fit_the_wan_vae():
    with pytest.raises(ValueError, match=r"num_frames=8 with architecture='wan'.*4k \+ 1 frames \(e.g. 9\)"):
        ToyModelConfig(architecture="wan", num_frames=8).validate()
    with pytest.raises(ValueError, match=r"architecture='hunyuan': expected one of \['cogvideox', 'cogvideox-i2v', 'wan'\]"):
        ToyModelConfig(architecture="hunyuan").validate()


def test_training_a_wan_toy_writes_a_pipeline_that_stock_wan_pipeline_loads_and_runs(tmp_path):
    folder = _train(tmp_path, 2)
    pipeline = WanPipeline.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    assert toy_config_of(pipeline) == TINY_WAN
    settings = generation_kwargs(pipeline) | {"num_inference_steps": 2}
    frames = pipeline(
        "a red square", generator=torch.Generator().manual_seed(0), output_type="np", **settings
    ).frames
    assert frames.shape == (1, TINY_WAN.num_frames, 16, 16, 3)  # the world's frame count, not one more


def test_resuming_a_cogvideox_checkpoint_as_wan_is_a_clear_error(tmp_path):
    _train(tmp_path, 1, model_config=TINY_COGVIDEOX)
    with pytest.raises(CheckpointError, match="incompatible.*'architecture': 'cogvideox'"):
        _train(tmp_path, 2, resume=True)


def test_records_written_before_the_architecture_field_read_as_cogvideox(tmp_path):
    folder = _train(tmp_path, 1, model_config=TINY_COGVIDEOX)
    record_path = folder / "toy_config.json"
    record = json.loads(record_path.read_text())
    del record["model"]["architecture"]
    record_path.write_text(json.dumps(record))
    from attnkit_lmp.toy.pretrained import load_toy_pipeline

    assert toy_config_of(load_toy_pipeline(folder)).architecture == "cogvideox"
    _train(tmp_path / "finetuned", 1, model_config=TINY_COGVIDEOX, init_from=folder)  # --init-from accepts it


def test_training_encodes_prompts_as_the_pipeline_does():
    pipeline = build_toy_pipeline(TINY_WAN, seed=0)
    prompts = ["a red square", "", "a blue circle"]
    denoiser = toy_denoiser(pipeline, TINY_WAN)
    with torch.no_grad():
        trained_on = denoiser.encode(prompts)
        generated_with, _ = pipeline.encode_prompt(
            prompts, do_classifier_free_guidance=False, max_sequence_length=TINY_WAN.text_length
        )
    torch.testing.assert_close(trained_on, generated_with)
    assert trained_on[1, 1:].abs().max() == 0  # "" is one </s> token; the padding is zeros


def test_training_noise_levels_are_the_schedulers_sigmas():
    # Training noises with sigma = t / 1000; sampling's timesteps are its sigmas x 1000 (rounded down).
    scheduler = build_toy_pipeline(TINY_WAN, seed=0).scheduler
    scheduler.set_timesteps(25)
    sigmas_of_timesteps = scheduler.timesteps.float() / scheduler.config.num_train_timesteps
    assert (scheduler.sigmas[:-1] - sigmas_of_timesteps).abs().max() < 1.5e-3


def test_cli_refuses_wan_with_a_frame_count_its_vae_cannot_encode(tmp_path, capsys):
    code = toy_main(["train", "--out", str(tmp_path), "--steps", "1", "--architecture", "wan", "--num-frames", "8"])
    assert code == 2
    assert "use 4k + 1 frames (e.g. 9)" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists()
