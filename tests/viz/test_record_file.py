"""The record file: exact round trip, no pickle, no model needed to read, clear errors, never half written."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from attnkit.record import AttentionRecorder, RecordFileError, load_record, save_record
from attnkit.record.file import METADATA_KEY

from .conftest import PROMPT, run_pipeline


def read_header(path):
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])


def test_saving_and_loading_gives_the_same_arrays_and_metadata(record, tmp_path):
    path = save_record(record, tmp_path / "dog.safetensors")
    loaded = load_record(path)
    assert loaded.branches == record.branches
    for branch in record.branches:
        assert loaded.maps[branch].dtype == torch.float32
        assert torch.equal(loaded.maps[branch], record.maps[branch])
    assert loaded.metadata() == record.metadata()
    assert loaded.timesteps == record.timesteps  # floats survive JSON exactly


def test_the_file_is_plain_safetensors_with_json_metadata(record, tmp_path):
    path = save_record(record, tmp_path / "dog.safetensors")
    header = read_header(path)
    assert set(header) == {"__metadata__", "maps/uncond", "maps/cond"}
    assert header["maps/cond"]["dtype"] == "F32" and header["maps/cond"]["shape"] == [2, 2, 2, 3, 4, 4]
    metadata = json.loads(header["__metadata__"][METADATA_KEY])
    assert metadata["tokens"] == ["dog", "grass"] and metadata["grid"] == [3, 4, 4]
    assert b"pickle" not in path.read_bytes() and not path.read_bytes().startswith(b"\x80")


def test_a_record_loads_without_diffusers_or_transformers(record, tmp_path):
    path = save_record(record, tmp_path / "dog.safetensors")
    script = (
        "import sys\n"
        "sys.modules['diffusers'] = None\n"  # any import of them now fails
        "sys.modules['transformers'] = None\n"
        "from attnkit.record import load_record\n"
        f"record = load_record({str(path)!r})\n"
        "print(record.tokens, tuple(record.maps['cond'].shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "['dog', 'grass'] (2, 2, 2, 3, 4, 4)" in result.stdout


def test_a_truncated_file_is_a_clear_error(record, tmp_path):
    path = save_record(record, tmp_path / "dog.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RecordFileError, match="not a readable safetensors file .*truncated"):
        load_record(path)


def test_metadata_that_does_not_match_the_arrays_is_a_clear_error(record, tmp_path):
    metadata = record.metadata()
    metadata["tokens"] = ["dog"]
    metadata["token_positions"] = [[2]]
    tensors = {f"maps/{branch}": maps for branch, maps in record.maps.items()}
    path = tmp_path / "edited.safetensors"
    save_file(
        tensors,
        str(path),
        metadata={
            "attnkit.format": "attnkit-attention-record",
            "attnkit.format_version": "1",
            METADATA_KEY: json.dumps(metadata),
        },
    )
    with pytest.raises(
        RecordFileError,
        match=r"has shape \(2, 2, 2, 3, 4, 4\) but the metadata describes \(2, 2, 1, 3, 4, 4\)",
    ):
        load_record(path)


def test_metadata_naming_other_branches_is_a_clear_error(record, tmp_path):
    metadata = record.metadata()
    metadata["branches"] = ["cond", "reference"]
    path = tmp_path / "edited.safetensors"
    save_file(
        {"maps/cond": record.maps["cond"], "maps/uncond": record.maps["uncond"]},
        str(path),
        metadata={
            "attnkit.format": "attnkit-attention-record",
            "attnkit.format_version": "1",
            METADATA_KEY: json.dumps(metadata),
        },
    )
    with pytest.raises(
        RecordFileError,
        match=r"names branches \['cond', 'reference'\] but the file has arrays for \['cond', 'uncond'\]",
    ):
        load_record(path)


def test_a_safetensors_file_that_is_not_a_record_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(RecordFileError, match="not an attnkit attention record"):
        load_record(path)


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_record"):
        load_record(tmp_path / "absent.safetensors")


def test_a_failed_save_leaves_the_old_file_and_no_temporary_files(record, tmp_path):
    path = save_record(record, tmp_path / "dog.safetensors")
    before = path.read_bytes()
    broken = load_record(path)
    broken.tokens = ["dog"]  # the arrays still hold two tokens
    broken.token_positions = [[2]]
    with pytest.raises(RecordFileError, match="does not match"):
        save_record(broken, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dog.safetensors"]


def test_a_run_that_reaches_no_recorded_step_gives_an_empty_record_that_saves(tiny_pipe, tmp_path):
    recorder = AttentionRecorder(tokens=["dog"], prompt=PROMPT, steps=[40])
    run_pipeline(tiny_pipe, [recorder], num_inference_steps=1, output_type="latent")
    assert recorder.record.is_empty and recorder.peak_kept_bytes == 0
    loaded = load_record(recorder.save_record(tmp_path / "empty.safetensors"))
    assert loaded.is_empty and loaded.maps["cond"].shape[0] == 0
