"""docs/porting.md's Python code blocks run, in order, as one script."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "porting.md"


def test_porting_page_code_blocks_run():
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 2, "porting.md lost its runnable examples"
    namespace: dict = {"__name__": "docs_porting"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"porting.md block {number}", "exec"), namespace)
