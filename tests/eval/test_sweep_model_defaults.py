"""A sweep starts from the settings the model folder brings (``lmp_defaults.json``), as transfer does."""

from __future__ import annotations

import json
import shutil

import pytest

from attnkit_lmp.eval.sweep import SweepError, base_lmp_config
from attnkit_lmp.model_defaults import DEFAULTS_FILE

from sweep_helpers import fast_settings, sweep, toy_dataset, toy_dataset_master  # noqa: F401

FOLDER_SETTINGS = {"config": {"fg_threshold": 0.25, "fbdm_steps": 20}, "call": {"num_inference_steps": 50}}


@pytest.fixture
def model_with_defaults(tmp_path):
    from attnkit.testing import saved_tiny_cogvideox_pipeline

    folder = shutil.copytree(saved_tiny_cogvideox_pipeline("t2v"), tmp_path / "model")
    (folder / DEFAULTS_FILE).write_text(json.dumps(FOLDER_SETTINGS))
    return folder


def test_the_sweep_starts_from_the_model_folders_settings_scaled_to_its_steps(tmp_path, model_with_defaults):
    settings = fast_settings(tmp_path, tmp_path / "out", model=str(model_with_defaults), steps=5)
    config, sources = base_lmp_config(settings)
    assert config.fg_threshold == 0.25 and sources["fg_threshold"] == str(model_with_defaults / DEFAULTS_FILE)
    assert (config.num_inference_steps, config.fbdm_steps) == (5, 2)  # 20 of 50 steps, scaled to 5


def test_config_and_flags_win_over_the_model_folder(tmp_path, model_with_defaults):
    config_file = tmp_path / "lmp.json"
    config_file.write_text(json.dumps({"fg_threshold": 0.4}))
    settings = fast_settings(
        tmp_path, tmp_path / "out", model=str(model_with_defaults), config=config_file, guidance_scale=2.5
    )
    config, sources = base_lmp_config(settings)
    assert config.fg_threshold == 0.4 and sources["fg_threshold"] == f"--config {config_file}"
    assert config.guidance_scale == 2.5 and sources["guidance_scale"] == "--guidance-scale"


def test_a_broken_defaults_file_stops_the_sweep_naming_it(tmp_path, model_with_defaults):
    (model_with_defaults / DEFAULTS_FILE).write_text(json.dumps({"config": {"fg_treshold": 0.2}}))
    settings = fast_settings(tmp_path, tmp_path / "out", model=str(model_with_defaults))
    with pytest.raises(SweepError, match=r"lmp_defaults.json'.*'fg_treshold'.*remove it"):
        base_lmp_config(settings)


def test_a_sweep_records_and_reports_the_folders_settings(toy_dataset, tmp_path, model_with_defaults):
    out = tmp_path / "out"
    settings = fast_settings(toy_dataset, out, model=str(model_with_defaults), methods=("lmp",), splits=("ori",))
    summary = sweep(settings)
    recorded = json.loads((out / "sweep.json").read_text())["fingerprint"]["lmp_config"]
    assert recorded["fg_threshold"] == 0.25
    assert f"settings from {model_with_defaults / DEFAULTS_FILE}: " in summary.describe()
