"""`attnkit viz`: writes the page, and bad input is one clear line on stderr with exit status 2."""

from __future__ import annotations

import pytest

from attnkit.cli import main
from attnkit.record import save_record


@pytest.fixture
def record_file(record, tmp_path):
    return save_record(record, tmp_path / "dog.safetensors")


def test_viz_writes_the_explorer_page(record_file, tmp_path, capsys):
    out = tmp_path / "maps.html"
    assert (
        main(
            [
                "viz",
                str(record_file),
                "--token",
                "dog",
                "--out",
                str(out),
                "--layer",
                "1",
                "--step",
                "0",
                "--branch",
                "uncond",
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert "attnkit-maps" in page and "branch uncond" in page


def test_viz_defaults_the_output_next_to_the_record(record_file):
    assert main(["viz", str(record_file)]) == 0
    assert record_file.with_suffix(".html").is_file()


def test_viz_can_draw_over_a_video(record_file, recorded_run, tmp_path):
    import imageio.v3 as iio

    video = tmp_path / "run.mp4"
    frames = (recorded_run.frames[0].permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    iio.imwrite(video, frames, plugin="pyav", codec="libx264", fps=8)  # PyAV: no ffmpeg binary needed
    out = tmp_path / "overlay.html"
    assert main(["viz", str(record_file), "--video", str(video), "--out", str(out)]) == 0
    assert out.read_text().count('"source":"data:image') == 3, "one video frame under each latent frame's map"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--token", "cat"],
            "token 'cat' is not in the record; it has tokens 'dog' (positions [2]), 'grass' (positions [6])",
        ),
        (["--layer", "9"], "layer 9 is out of range: the record has layers 0, 1"),
        (["--step", "5"], "step 5 is out of range: the record has steps 0, 1"),
        (
            ["--branch", "reference"],
            "branch 'reference' is not in the record; it has branches ['uncond', 'cond']",
        ),
    ],
)
def test_viz_bad_choices_list_what_the_record_has(record_file, tmp_path, capsys, arguments, message):
    out = tmp_path / "maps.html"
    assert main(["viz", str(record_file), "--out", str(out), *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("attnkit viz: error: ") and message in error
    assert not out.exists(), "nothing is written on failure"


def test_viz_of_a_corrupted_file_is_a_clear_error(record_file, capsys):
    record_file.write_bytes(record_file.read_bytes()[:500])
    assert main(["viz", str(record_file)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_viz_of_an_empty_record_is_a_clear_error(record, tmp_path, capsys):
    from attnkit.record import AttentionRecord

    empty = AttentionRecord.from_metadata(
        {**record.metadata(), "steps": [], "timesteps": []},
        {branch: maps[:0] for branch, maps in record.maps.items()},
    )
    path = save_record(empty, tmp_path / "empty.safetensors")
    assert main(["viz", str(path)]) == 2
    assert "holds no maps" in capsys.readouterr().err


def test_viz_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["viz", str(tmp_path / "absent.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
