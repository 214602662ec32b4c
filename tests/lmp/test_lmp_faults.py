"""Inputs that would give a meaningless video (black, or with a module silently off) are refused, naming why."""

from __future__ import annotations

import json
import math

import pytest
import torch

from attnkit_lmp import LMPConfig, LMPConfigError

from .conftest import PROMPT, REFERENCE_PROMPT


@pytest.mark.parametrize("field", ["rmtm_lambda", "asm_eta", "guidance_scale", "true_cfg_scale", "fg_threshold"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_config_values_are_refused_on_construction(field, value):
    with pytest.raises(LMPConfigError, match=rf"LMPConfig\.{field}=.*finite number"):
        LMPConfig(**{field: value})


def test_non_finite_values_are_refused_in_a_loaded_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"rmtm_lambda": Infinity}')  # Python's json reads this non-standard token
    with pytest.raises(LMPConfigError, match=r"rmtm_lambda=inf .*finite"):
        LMPConfig.load(path)


def test_a_number_given_as_text_is_named_not_a_type_error():
    with pytest.raises(LMPConfigError, match=r"asm_eta='100' .*finite number"):
        LMPConfig(asm_eta="100")


def test_a_config_changed_after_construction_still_fails_validate_and_is_never_saved_as_infinity(tmp_path):
    config = LMPConfig.for_steps(2)
    config.asm_eta = math.inf
    with pytest.raises(LMPConfigError, match="asm_eta=inf"):
        config.validate()
    with pytest.raises(ValueError):
        config.save(tmp_path / "config.json")
    assert not (tmp_path / "config.json").exists()
    assert json.loads(LMPConfig.for_steps(2).to_json())["asm_eta"] == 100.0


def transfer(pipe, reference=None, **overrides):
    from attnkit_lmp import motion_transfer

    arguments = dict(
        reference_prompt=REFERENCE_PROMPT,
        reference_subject="dog",
        prompt=PROMPT,
        subject="cat",
        config=LMPConfig.for_steps(2),
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    arguments.update(overrides)
    return motion_transfer(pipe, reference=reference, **arguments)


def test_nan_reference_pixels_are_refused(t2v_pipe):
    from attnkit_lmp import VideoReadError

    frames = torch.rand(9, 3, 32, 32)
    frames[2, 0, 5, 5] = float("nan")
    with pytest.raises(VideoReadError, match=r"1 value\(s\) are NaN or infinite"):
        transfer(t2v_pipe, reference=frames)


@pytest.mark.parametrize(
    "image, message",
    [
        (torch.full((3, 32, 32), float("nan")), "NaN or infinite"),
        (torch.rand(3, 32, 32) * 2, r"must be in \[0, 1\]"),
        (torch.rand(32, 32, 3), r"shape \(32, 32, 3\); expected \(3, H, W\)"),
        ("/no/such/first-frame.png", "not a readable image file"),
        (42, "is a int; pass a PIL image"),
    ],
    ids=["nan", "range", "channels-last", "missing-file", "not-an-image"],
)
def test_a_bad_image_to_video_first_frame_is_refused_before_encoding(i2v_pipe, monkeypatch, image, message):
    from attnkit_lmp import MotionTransferError
    from attnkit_lmp import transfer as transfer_module

    monkeypatch.setattr(transfer_module, "initial_noise", lambda *a, **k: pytest.fail("encoding started"))
    with pytest.raises(MotionTransferError, match=message):
        transfer(i2v_pipe, reference=torch.rand(9, 3, 32, 32), image=image)


def test_the_first_frame_is_cover_cropped_like_the_reference():
    from PIL import Image

    from attnkit_lmp.video_io import cover_image, resize_and_crop

    wide = torch.rand(3, 32, 64)
    assert torch.equal(cover_image(wide, 32, 32), resize_and_crop(wide[None], 32, 32)[0])
    cropped = cover_image(Image.new("RGB", (64, 32)), 32, 32)
    assert cropped.size == (32, 32)  # the pipeline's own resize would have squeezed 64 x 32 into 32 x 32
    same_aspect = Image.new("RGB", (64, 64))
    assert cover_image(same_aspect, 32, 32) is same_aspect


@pytest.mark.parametrize("field", ["rmtm_layers", "fbdm_layers", "asm_layers"])
def test_a_layer_index_beyond_the_models_depth_is_an_error(t2v_pipe, field):
    from attnkit_lmp import MotionTransferError

    depth = len(t2v_pipe.transformer.transformer_blocks)
    with pytest.raises(MotionTransferError, match=rf"{field}=\[0, 99\] .*0\.\.{depth - 1}.*\[99\] would never run"):
        transfer(t2v_pipe, reference=torch.rand(9, 3, 32, 32), config=LMPConfig.for_steps(2, **{field: [0, 99]}))
    assert not hasattr(t2v_pipe.transformer, "_attnkit_session")


def test_the_record_says_what_each_module_actually_did(t2v_pipe):
    result = transfer(
        t2v_pipe, reference=torch.rand(9, 3, 32, 32), return_details=True, config=LMPConfig.for_steps(2, rmtm_layers=[1])
    )
    activity = result.record["activity"]
    assert activity["rmtm"]["layers"] == [1] and activity["rmtm"]["steps"] == [0, 1]
    assert activity["rmtm"]["calls_changed"] > 0
    assert activity["fbdm"]["mask_refreshes"] == len(result.masks) > 0
    assert activity["asm"]["calls_changed"] > 0 and activity["asm"]["steps"] == [0]  # asm_steps = 1


@pytest.mark.parametrize("blocked", ["lmp.reference", "lmp.rmtm", "lmp.asm", "lmp.fbdm"])
def test_blocking_an_lmp_module_is_an_error_not_a_run_without_it(t2v_pipe, monkeypatch, blocked):
    import attnkit

    monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", blocked)
    with pytest.raises(attnkit.PluginError, match=rf"'{blocked}' was passed to attach\(\) but ATTNKIT_BLOCK_PLUGINS"):
        transfer(t2v_pipe, reference=torch.rand(9, 3, 32, 32))


def test_a_huge_guidance_scale_is_an_error_naming_the_step_not_a_black_video(t2v_pipe):
    from attnkit_lmp.transfer import NonFiniteOutputError

    config = LMPConfig.for_steps(2, guidance_scale=1e38)  # finite, but step 0's guidance overflows the latents
    with pytest.raises(NonFiniteOutputError, match=r"went non-finite at step 1.*check_finite=True"):
        transfer(t2v_pipe, reference=torch.rand(9, 3, 32, 32), config=config)


def test_with_check_finite_a_huge_asm_eta_names_the_plugin_call(t2v_pipe):
    import attnkit

    config = LMPConfig.for_steps(2, asm_eta=1e38)
    with pytest.raises(attnkit.NonFiniteError, match=r"lmp\.asm") as raised:
        transfer(t2v_pipe, reference=torch.rand(9, 3, 32, 32), config=config, check_finite=True)
    assert raised.value.step == 0


def test_write_video_flushes_the_file_and_its_rename_to_disk(tmp_path, monkeypatch):
    from attnkit.record import atomic
    from attnkit_lmp import video_io

    flushed = []
    original = atomic.fsync_path
    monkeypatch.setattr(atomic, "fsync_path", lambda path: (flushed.append(str(path)), original(path)))
    path = video_io.write_video(tmp_path / "out.mp4", torch.rand(3, 3, 16, 16))
    assert path.is_file() and len(flushed) == 2
    assert flushed[0].endswith(".mp4") and flushed[0] != str(path) and flushed[1] == str(tmp_path)
