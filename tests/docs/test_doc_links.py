"""Every `docs/<file>.md` and `docs/<file>.md#<anchor>` the repository cites resolves.

Code, tests, the README and compat_matrix.md cite the repository's own documents by path and
GitHub heading anchor; a renamed heading or a missing file fails here. Relative links between
the documents in docs/ are checked the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest_helpers import REPO

DOCS = "docs"
# A citation: docs/<name>.md, optionally followed by #<anchor>.
CITATION = re.compile(DOCS + r"/([A-Za-z0-9_.-]+\.md)(?:#([A-Za-z0-9_-]+))?")
# A Markdown link from one document to another: ](<name>.md#<anchor>).
RELATIVE_LINK = re.compile(r"\]\(((?:\.\./)?[A-Za-z0-9_./-]*\.md)?(?:#([A-Za-z0-9_-]+))?\)")
SCANNED = ("tfxent", "tests", "README.md", "compat_matrix.md")
SUFFIXES = {".py", ".md", ".cc", ".h", ".txt", ".toml", ".ini"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_~]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code blocks), with GitHub's
    `-1`, `-2` suffixes for repeated headings."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in SUFFIXES]
    return [p for p in files if "__pycache__" not in p.parts]


def citations() -> dict[tuple[str, str | None], list[str]]:
    """(document, anchor or None) -> where it is cited (path:line)."""
    cited: dict[tuple[str, str | None], list[str]] = {}
    for path in _scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for match in CITATION.finditer(line):
                where = f"{path.relative_to(REPO)}:{number}"
                cited.setdefault((match.group(1), match.group(2)), []).append(where)
    return cited


def unresolved(cited: dict[tuple[str, str | None], list[str]], root: Path) -> list[str]:
    problems = []
    for (name, anchor), where in sorted(cited.items(), key=str):
        path = root / DOCS / name
        if not path.is_file():
            problems.append(f"{DOCS}/{name} does not exist (cited at {where[0]})")
        elif anchor is not None and anchor not in anchors(path):
            problems.append(f"{DOCS}/{name} has no heading #{anchor} (cited at {where[0]})")
    return problems


CITED = citations()


def test_the_repository_cites_its_documents():
    assert ("tf_behaviour.md", "dense-kernel") in CITED
    assert len(CITED) > 20


def test_every_cited_document_and_anchor_exists():
    problems = unresolved(CITED, REPO)
    assert not problems, "\n".join(problems)


def test_links_between_the_documents_resolve():
    problems = []
    for document in sorted((REPO / DOCS).glob("*.md")):
        text = document.read_text(encoding="utf-8")
        for match in RELATIVE_LINK.finditer(text):
            target = (document.parent / match.group(1)).resolve() if match.group(1) else document
            if not target.is_file():
                problems.append(f"{document.name}: {match.group(0)} names no file")
            elif match.group(2) and match.group(2) not in anchors(target):
                problems.append(f"{document.name}: {match.group(0)} names no heading")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Dense values and broadcasting", "dense-values-and-broadcasting"),
        ("XLA", "xla"),
        ("`tfxent check`: what it runs", "tfxent-check-what-it-runs"),
        ("Build and load", "build-and-load"),
    ],
)
def test_slug_follows_github(heading, anchor):
    assert slug(heading) == anchor


def test_a_missing_heading_or_file_is_reported(tmp_path):
    (tmp_path / DOCS).mkdir()
    (tmp_path / DOCS / "a.md").write_text("# A\n\n## Real heading\n\n```\n## not a heading\n```\n")
    cited = {("a.md", "real-heading"): ["x:1"], ("a.md", "not-a-heading"): ["x:2"]}
    cited[("b.md", None)] = ["x:3"]
    assert unresolved(cited, tmp_path) == [
        f"{DOCS}/a.md has no heading #not-a-heading (cited at x:2)",
        f"{DOCS}/b.md does not exist (cited at x:3)",
    ]
