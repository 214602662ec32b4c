"""examples/record_attention.py writes a record that loads and a page that holds the maps over the video."""

from __future__ import annotations

import runpy
from pathlib import Path

from attnkit.record import load_record

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "record_attention.py"


def test_the_example_writes_a_record_and_its_page(tmp_path, capsys):
    example = runpy.run_path(str(EXAMPLE), run_name="example")
    assert example["main"](["--out-dir", str(tmp_path), "--steps", "1", "--word", "dog"]) == 0
    record = load_record(tmp_path / "attention.safetensors")
    assert record.tokens == ["dog"] and record.grid == (5, 8, 8) and record.steps == [0]
    page = (tmp_path / "attention.html").read_text()
    assert page.count('"source":"data:image') == 5, "each latent frame's map is drawn over a decoded frame"
    assert "wrote" in capsys.readouterr().out
