"""The eval commands written in the docs stay valid: every option they use exists and parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from attnkit_lmp.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"


def eval_commands(page: Path) -> list[list[str]]:
    """The `attnkit-lmp eval` (or `-m attnkit_lmp.cli eval`) command lines of a page's shell blocks."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", page.read_text(), flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("#", 1)[0])
            if "..." in words:
                continue  # an abbreviated example
            if "eval" in words and ("attnkit-lmp" in words or "attnkit_lmp.cli" in words):
                commands.append(words[words.index("eval") :])
    return commands


@pytest.mark.parametrize("page", ["eval-report.md", "toy-table1.md"])
def test_the_eval_commands_of_the_page_parse(page):
    path = DOCS / page
    if not path.is_file():
        pytest.skip(f"{page} is not written yet")
    commands = eval_commands(path)
    assert commands, f"{page} shows no attnkit-lmp eval command"
    parser = build_parser()
    for words in commands:
        args = parser.parse_args(words)
        assert args.command == "eval" and args.dataset and args.out
