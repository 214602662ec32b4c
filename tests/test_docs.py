"""The docs' Python code blocks run, in order, as one script per page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXECUTED_PAGES = ["hooks.md", "writing-a-plugin.md", "../README.md"]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", EXECUTED_PAGES)
def test_code_blocks_run(page):
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no python code blocks"
    namespace: dict = {"__name__": f"docs_{page}"}
    for number, block in enumerate(blocks, start=1):
        code = compile(block, f"{page} block {number}", "exec")
        exec(code, namespace)
