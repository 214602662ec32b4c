"""LMPConfig: paper defaults, scaling to short runs, JSON/YAML round trip, validation messages."""

from __future__ import annotations

import pytest

from attnkit_lmp.config import LMPConfig, LMPConfigError


def test_defaults_are_the_papers():
    config = LMPConfig()
    assert (config.num_inference_steps, config.fbdm_steps, config.rmtm_steps, config.asm_steps) == (
        50,
        40,
        45,
        35,
    )
    assert (config.rmtm_lambda, config.asm_eta, config.asm_top_fraction) == (0.98, 100.0, 0.2)
    config.validate()


def test_for_steps_scales_the_thresholds():
    config = LMPConfig.for_steps(4)
    assert (config.num_inference_steps, config.fbdm_steps, config.rmtm_steps, config.asm_steps) == (
        4,
        3,
        4,
        3,
    )
    assert LMPConfig.for_steps(50) == LMPConfig()
    assert LMPConfig.for_steps(2, asm_steps=0).asm_steps == 0


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_round_trips_through_json_and_yaml(tmp_path, suffix):
    config = LMPConfig.for_steps(3, rmtm_layers=[0, 1], fg_threshold=0.25, rmtm_cfg_rows="cond")
    path = config.save(tmp_path / f"config{suffix}")
    assert LMPConfig.load(path) == config


def test_threshold_above_num_inference_steps_is_a_clear_error():
    with pytest.raises(LMPConfigError, match=r"rmtm_steps=45 .*0\.\.num_inference_steps=4.*for_steps\(4\)"):
        LMPConfig(num_inference_steps=4, fbdm_steps=3, asm_steps=3).validate()


@pytest.mark.parametrize("value", [0.0, -0.5])
def test_lambda_must_be_positive(value):
    with pytest.raises(LMPConfigError, match=rf"rmtm_lambda={value}.*positive"):
        LMPConfig(rmtm_lambda=value).validate()


@pytest.mark.parametrize(
    "field, value",
    [
        ("asm_top_fraction", 0.0),
        ("fg_threshold", 1.5),
        ("rmtm_cfg_rows", "uncond"),
        ("reference_noising", "ddim"),
        ("frame_sampling", "random"),
        ("asm_layers", [-1]),
        ("reference_noise_step", 50),
        ("asm_eta", -1.0),
    ],
)
def test_bad_fields_are_named(field, value):
    with pytest.raises(LMPConfigError, match=rf"LMPConfig\.{field}="):
        LMPConfig(**{field: value}).validate()


def test_unknown_fields_in_a_file_are_named(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"lambda": 0.9}')
    with pytest.raises(LMPConfigError, match=r"unknown LMP config fields \['lambda'\]"):
        LMPConfig.load(path)


def test_a_malformed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("num_inference_steps: [")
    with pytest.raises(LMPConfigError, match="not valid YAML"):
        LMPConfig.load(path)
