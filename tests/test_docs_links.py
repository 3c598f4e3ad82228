"""Every relative link in the README and docs/ points to a file, and every #anchor into a page to one of its headings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    titles = re.findall(r"^#+\s+(.*?)\s*$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}


def test_heading_anchors_drop_punctuation_and_hyphenate_spaces():
    page = ROOT / "docs" / "sample.md"
    assert "3d-phantom-is-every-structure-there" in heading_anchors(page)
    assert "fewer-ddpm-steps-respaced-tried-as-the-default-and-not-adopted" in heading_anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_files_and_headings(page):
    text = page.read_text(encoding="utf-8")  # not the locale's: a test before may have set an ASCII one
    links = [(t, a) for t, a in LINK.findall(text) if "://" not in t and not t.startswith("mailto:")]
    broken = []
    for target, anchor in links:
        path = (page.parent / target) if target else page
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path):
            broken.append(f"{target}#{anchor} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
