"""A record file with malformed metadata is a clear error naming the field, in load_record and `attnkit viz`."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import save_file

from attnkit.cli import main
from attnkit.record import RecordFileError, load_record
from attnkit.record.file import METADATA_KEY


def write_edited(record, path, **changes):
    metadata = {**record.metadata(), **changes}
    save_file(
        {f"maps/{branch}": maps for branch, maps in record.maps.items()},
        str(path),
        metadata={
            "attnkit.format": "attnkit-attention-record",
            "attnkit.format_version": "1",
            METADATA_KEY: json.dumps(metadata),
        },
    )
    return path


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"steps": None}, "steps"),
        ({"token_positions": [None, [3]]}, "token_positions"),
        ({"timesteps": ["999", "500"]}, "timesteps"),
        ({"grid": [3, -4, 4]}, "grid"),
        ({"layer_names": [1, 2]}, "layer_names"),
        ({"complete": "yes"}, "complete"),
    ],
    ids=["steps-null", "null-position", "string-timesteps", "negative-grid", "numeric-names", "complete-text"],
)
def test_malformed_metadata_names_the_field(record, tmp_path, changes, field):
    path = write_edited(record, tmp_path / "edited.safetensors", **changes)
    with pytest.raises(RecordFileError, match=rf"record metadata field '{field}' is .*expected"):
        load_record(path)


def test_viz_of_malformed_metadata_is_one_clear_line_and_exit_2(record, tmp_path, capsys):
    path = write_edited(record, tmp_path / "edited.safetensors", steps=None)
    assert main(["viz", str(path)]) == 2
    error = capsys.readouterr().err
    assert "record metadata field 'steps' is null" in error and "Traceback" not in error
