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
