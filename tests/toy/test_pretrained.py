"""The bundled toy pipeline loads with the stock diffusers class; a broken one fails with a retrain hint."""

import shutil

import pytest
import torch
from diffusers import CogVideoXPipeline

from attnkit_lmp.toy.model import generation_kwargs
from attnkit_lmp.toy.pretrained import BUNDLED_PIPELINE, ToyModelMissingError, load_toy_pipeline

MAX_BUNDLE_BYTES = 20 * 1024 * 1024


def test_bundled_pipeline_is_small_and_safetensors_only():
    files = [path for path in BUNDLED_PIPELINE.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= MAX_BUNDLE_BYTES
    weights = [path for path in files if path.suffix in {".safetensors", ".bin", ".pt", ".ckpt"}]
    assert weights and all(path.suffix == ".safetensors" for path in weights)


def test_bundled_pipeline_loads_with_stock_cogvideox_pipeline_and_generates():
    pipeline = CogVideoXPipeline.from_pretrained(BUNDLED_PIPELINE)
    pipeline.set_progress_bar_config(disable=True)
    settings = generation_kwargs(pipeline) | {"num_inference_steps": 2}
    output = pipeline(
        "a red square", generator=torch.Generator().manual_seed(0), output_type="np", **settings
    )
    assert output.frames.shape == (1, settings["num_frames"], settings["height"], settings["width"], 3)


def test_missing_model_files_raise_an_error_that_says_how_to_retrain(tmp_path):
    with pytest.raises(ToyModelMissingError, match="missing .*model_index.json.*toy train"):
        load_toy_pipeline(tmp_path)


def test_corrupt_weights_raise_an_error_that_says_how_to_retrain(tmp_path):
    copy = tmp_path / "toy"
    shutil.copytree(BUNDLED_PIPELINE, copy)
    (copy / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ToyModelMissingError, match="cannot be loaded.*toy train"):
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
