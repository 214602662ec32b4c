"""A sweep folder scored under earlier MF rules is refused, not mixed with numbers under today's."""

import json

import pytest

from attnkit_lmp.eval.motion_fidelity import MOTION_FIDELITY_VERSION
from attnkit_lmp.eval.sweep import SETTINGS_FILE, SweepSettingsMismatchError, check_output_settings


def test_results_scored_before_the_version_was_recorded_are_refused(tmp_path):
    current = {"tracker": "lk", "grid_size": 16, "motion_fidelity_version": MOTION_FIDELITY_VERSION}
    earlier = {key: value for key, value in current.items() if key != "motion_fidelity_version"}
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"fingerprint": earlier}))
    expected = rf"motion_fidelity_version: was .*, now {MOTION_FIDELITY_VERSION}"
    with pytest.raises(SweepSettingsMismatchError, match=expected):
        check_output_settings(tmp_path, current)
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"fingerprint": current}))
    check_output_settings(tmp_path, current)
