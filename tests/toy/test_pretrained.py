"""The bundled toy pipeline loads with the stock diffusers class; a broken one fails with a retrain hint."""

import json
import shutil

import pytest
import torch
from diffusers import CogVideoXPipeline, WanPipeline

from attnkit_lmp.toy.model import generation_kwargs, toy_config_of
from attnkit_lmp.toy.pretrained import (
    BUNDLED_PIPELINE,
    BUNDLED_WAN_PIPELINE,
    ToyModelMissingError,
    load_toy_pipeline,
)

MAX_BUNDLE_BYTES = 20 * 1024 * 1024
BUNDLES = {"cogvideox": (BUNDLED_PIPELINE, CogVideoXPipeline), "wan": (BUNDLED_WAN_PIPELINE, WanPipeline)}


@pytest.mark.parametrize("architecture", BUNDLES)
def test_bundled_pipeline_is_small_and_safetensors_only(architecture):
    folder, _ = BUNDLES[architecture]
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= MAX_BUNDLE_BYTES
    weights = [path for path in files if path.suffix in {".safetensors", ".bin", ".pt", ".ckpt"}]
    assert weights and all(path.suffix == ".safetensors" for path in weights)


@pytest.mark.parametrize("architecture", BUNDLES)
def test_bundled_pipeline_loads_with_its_stock_diffusers_class_and_generates(architecture):
    folder, pipeline_class = BUNDLES[architecture]
    pipeline = pipeline_class.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    world = toy_config_of(pipeline).world
    assert toy_config_of(pipeline).architecture == architecture
    settings = generation_kwargs(pipeline) | {"num_inference_steps": 2}
    output = pipeline(
        "a red square", generator=torch.Generator().manual_seed(0), output_type="np", **settings
    )
    assert output.frames.shape == (1, world.num_frames, world.height, world.width, 3)


def test_missing_model_files_raise_an_error_that_says_how_to_retrain(tmp_path):
    with pytest.raises(ToyModelMissingError, match="missing .*model_index.json.*scripts/train-toy.sh"):
        load_toy_pipeline(tmp_path)


def test_corrupt_weights_raise_an_error_that_says_how_to_retrain(tmp_path):
    copy = tmp_path / "toy"
    shutil.copytree(BUNDLED_PIPELINE, copy)
    (copy / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ToyModelMissingError, match="cannot be loaded.*scripts/train-toy.sh"):
        load_toy_pipeline(copy)


@pytest.mark.slow
def test_bundled_model_draws_the_prompted_colour_and_moves_the_object():
    from attnkit_lmp.toy.quality import measure_quality

    torch.set_num_threads(1)
    pipeline = load_toy_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    summary = measure_quality(pipeline, num_videos=12, seed=1000, batch_size=12)["summary"]
    # Margins below the measured bar (docs/toy-world.md): a regression, not noise, fails this.
    assert summary["colour_accuracy"] >= 0.8
    assert summary["present_rate"] >= 0.7
    assert summary["moving_rate"] >= 0.5


def test_a_missing_wan_bundle_is_told_the_wan_training_command(tmp_path, monkeypatch):
    from attnkit_lmp.toy import pretrained

    monkeypatch.setattr(pretrained, "BUNDLED_WAN_PIPELINE", tmp_path / "pretrained_wan")
    with pytest.raises(ToyModelMissingError, match="ARCH=wan bash scripts/train-toy.sh"):
        load_toy_pipeline(tmp_path / "pretrained_wan")
    with pytest.raises(ToyModelMissingError) as error:
        load_toy_pipeline(tmp_path / "elsewhere")
    assert "ARCH=wan" not in str(error.value) and "training/cogvideox-v2" in str(error.value)


@pytest.mark.parametrize("architecture", BUNDLES)
def test_a_bundled_toy_config_describes_the_world_its_model_was_trained_on(architecture):
    # A third party renders in-distribution reference clips from this section alone (palette, shapes,
    # backgrounds, frame geometry), so it must be the model's own world.
    from attnkit_lmp.toy.model import ToyModelConfig
    from attnkit_lmp.toy.world import world_description

    folder, _ = BUNDLES[architecture]
    record = json.loads((folder / "toy_config.json").read_text())
    assert record["world"] == world_description(ToyModelConfig.from_dict(record["model"]).world)
    assert set(record["world"]["palette"]) == {"red", "green", "blue", "yellow"}
