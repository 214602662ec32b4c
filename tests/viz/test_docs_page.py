"""docs/attention-maps.md: its Python blocks run in order; the screenshot it shows is committed and small."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = DOCS / "attention-maps.md"


def test_the_python_blocks_run_in_order(tmp_path, monkeypatch):
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the blocks write dog.safetensors and maps.html
    namespace: dict = {"__name__": "docs_attention_maps"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"attention-maps.md block {number}", "exec"), namespace)
    assert (tmp_path / "dog.safetensors").is_file() and (tmp_path / "maps.html").is_file()


def test_the_screenshot_is_there_and_small():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", PAGE.read_text())
    assert images
    for image in images:
        path = DOCS / image
        assert path.is_file(), f"{image} is linked from attention-maps.md but not committed"
        assert path.stat().st_size < 200_000
