"""docs/index.md is the table of contents: it links every page of docs/, and every link points at a page."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def linked_pages() -> set[str]:
    return set(re.findall(r"\]\(([^)#]+\.md)\)", (DOCS / "index.md").read_text()))


def test_index_links_every_page():
    pages = {path.name for path in DOCS.glob("*.md")} - {"index.md"}
    assert pages - linked_pages() == set()


def test_every_link_of_the_index_exists():
    for link in linked_pages():
        assert (DOCS / link).is_file(), link


def test_method_is_referred_to_as_the_projects_own_page():
    # The specification lives in docs/method.md; no page may send a reader to a file outside the repo.
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        assert "METHOD.md" not in page.read_text(), page.name
