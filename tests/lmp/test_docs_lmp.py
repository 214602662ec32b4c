"""docs/lmp.md: its Python blocks run in order as one script, and its attnkit-lmp command lines succeed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from attnkit_lmp.cli import main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "lmp.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_python_blocks_and_command_lines_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    python = blocks("python")
    assert len(python) >= 4
    namespace: dict = {"__name__": "docs_lmp"}
    for number, block in enumerate(python, start=1):
        exec(compile(block, f"lmp.md block {number}", "exec"), namespace)
    commands = [
        line for block in blocks("bash") for line in block.splitlines() if line.startswith("attnkit-lmp ")
    ]
    assert commands
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0
    assert (tmp_path / "lmp_out" / "video.mp4").is_file()
