"""The image-to-video toy: a CogVideoXImageToVideoPipeline trained by the same loop, conditioned on the clip's
first frame, and started from a text-to-video toy without changing what that model predicts."""

import numpy as np
import pytest
import torch
from diffusers import CogVideoXImageToVideoPipeline

from attnkit_lmp.toy.denoiser import toy_denoiser
from attnkit_lmp.toy.model import ToyModelConfig, generation_kwargs, toy_config_of
from attnkit_lmp.toy.pretrained import load_toy_pipeline
from attnkit_lmp.toy.train import CheckpointError, TrainConfig, train
from tiny_toys import TINY_I2V
from tiny_toys import TINY_MODEL as TINY_T2V


def _train(out, steps, model_config=TINY_I2V, **overrides):
    settings = dict(seed=0, train_config=TrainConfig(batch_size=2), checkpoint_every=1, progress=False)
    return train(out, steps, model_config=model_config, **(settings | overrides))


def test_an_i2v_toy_loads_with_the_stock_pipeline_and_generates_from_an_image(tmp_path):
    folder = _train(tmp_path, 1)
    pipeline = CogVideoXImageToVideoPipeline.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    assert toy_config_of(pipeline).image_to_video
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[4:10, 4:10] = (255, 0, 0)
    settings = generation_kwargs(pipeline) | {"num_inference_steps": 2}
    from PIL import Image

    frames = pipeline(
        image=Image.fromarray(image), prompt="a red square", output_type="np",
        generator=torch.Generator().manual_seed(0), **settings,
    ).frames  # fmt: skip
    assert frames.shape == (1, 4, 16, 16, 3)


def test_starting_an_i2v_toy_from_a_t2v_one_keeps_its_predictions(tmp_path):
    t2v_folder = _train(tmp_path / "t2v", 1, model_config=TINY_T2V)
    i2v_folder = _train(tmp_path / "i2v", 0, init_from=t2v_folder)
    t2v, i2v = load_toy_pipeline(t2v_folder), load_toy_pipeline(i2v_folder)
    noisy = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    clip = torch.rand(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    timesteps = torch.tensor([900, 100])
    with torch.no_grad():
        before = toy_denoiser(t2v, TINY_T2V)
        after = toy_denoiser(i2v, TINY_I2V)
        text = before.encode(["a red square", "a blue circle"])
        torch.testing.assert_close(
            after.predict_clean(noisy, text, timesteps, clip=clip), before.predict_clean(noisy, text, timesteps)
        )
        # ... and the image channels are live: they train (non-zero gradient) from the first step.
    after.pipeline.transformer.requires_grad_(True)
    after.predict_clean(noisy, text, timesteps, clip=clip).square().mean().backward()
    gradient = after.pipeline.transformer.patch_embed.proj.weight.grad
    assert gradient[:, 3:].abs().sum() > 0


def test_an_i2v_toy_cannot_start_from_a_model_of_other_sizes(tmp_path):
    other = ToyModelConfig(**(TINY_T2V.to_dict() | {"num_layers": 2}))
    folder = _train(tmp_path / "t2v", 1, model_config=other)
    with pytest.raises(CheckpointError, match="model settings .*'num_layers': 2"):
        _train(tmp_path / "i2v", 1, init_from=folder)


def test_the_i2v_denoiser_needs_the_clip_it_is_conditioned_on():
    from attnkit_lmp.toy.model import build_toy_pipeline

    denoiser = toy_denoiser(build_toy_pipeline(TINY_I2V), TINY_I2V)
    with pytest.raises(ValueError, match="first frame conditions it"):
        denoiser.predict_clean(torch.zeros(1, 4, 3, 16, 16), denoiser.encode(["a red square"]), torch.tensor([10]))


def test_the_i2v_target_image_is_the_references_first_frame_in_the_target_look():
    from attnkit_lmp.toy.classify import read_frames
    from attnkit_lmp.toy.measure import measurement_cases
    from attnkit_lmp.toy.world import WorldConfig, render_clip

    world = WorldConfig()
    for case in measurement_cases(3):
        image = np.asarray(case.target_image(world))
        reading = read_frames(image[None])
        assert (reading.colour, reading.shape) == (case.target_colour, case.target_shape)
        first = render_clip(case.reference, world).centroids[0]
        assert np.linalg.norm(reading.centroids[0] - first) < 1.5


def test_measuring_an_i2v_toy_conditions_every_variant_on_the_target_image(tmp_path, monkeypatch):
    from attnkit_lmp.toy.measure import measurement as measurement_module
    from attnkit_lmp.toy.measure import measure, measurement_cases, toy_lmp_config

    pipe = load_toy_pipeline(_train(tmp_path, 1))
    pipe.set_progress_bar_config(disable=True)
    images = []
    original = measurement_module.run_variant

    def recording(*args, image=None, **kwargs):
        images.append(image)
        return original(*args, image=image, **kwargs)

    monkeypatch.setattr(measurement_module, "run_variant", recording)
    case = measurement_cases(1)[0]
    report = measure(pipe, [case], toy_lmp_config(2, model=TINY_I2V), ("baseline", "lmp"), progress=False)
    assert len(report["records"]) == 2 and len(images) == 2
    expected = np.asarray(case.target_image(TINY_I2V.world))
    assert all(np.array_equal(np.asarray(image), expected) for image in images)
