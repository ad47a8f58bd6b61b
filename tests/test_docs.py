"""The README and docs/ point only at what exists: every relative link and every docs/ file named
(in the docs or in the code) is there, a section cited by its heading has that heading, the README
indexes every doc and names every extra and make target, and docs/architecture.md names every
module of both packages and no file that is gone. Reading text only: fast."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS, ROOT / "notebooks" / "README.md"]
ARCHITECTURE = ROOT / "docs/architecture.md"
CLIMB = re.compile(r"(?<![\w./])(?:\.\./)+[\w./-]*")
"""A relative path that climbs: the pages may name only what a clone of the repository has."""
CODE_FOLDERS = ("harmonization", "attacks_torch", "benchmarks", "examples", "scripts", "tests", "notebooks")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
DOC_NAME = re.compile(r"docs/([\w-]+)\.md")
CITATION = re.compile(r'docs/([\w-]+)\.md,?\s*(?:#\s*)?"([^"\n]+)"')
SKIPPED = {".venv", ".reference-env", ".git", "__pycache__", "node_modules"}


def repository_files() -> list[Path]:
    """Every file of the checkout but environments, caches and git's own (not descending into them)."""
    files = []
    for folder, names, filenames in os.walk(ROOT):
        names[:] = [name for name in names if name not in SKIPPED]
        files += [Path(folder, name) for name in filenames]
    return files


def code_and_pages() -> list[Path]:
    code = [
        path
        for folder in CODE_FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".md", ".ipynb", ".sh") and "__pycache__" not in path.parts
    ]
    return [*PAGES, ROOT / "Makefile", ROOT / "pyproject.toml", *code]


def headings(doc: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in doc.read_text().splitlines() if line.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    text = page.read_text()
    targets = [
        target.split("#", 1)[0]
        for target in LINK.findall(text)
        if not target.startswith(("http://", "https://", "mailto:", "#"))
    ]
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"
    climbing = [path for path in CLIMB.findall(text) if not (page.parent / path).resolve().is_relative_to(ROOT)]
    assert not climbing, f"{page.relative_to(ROOT)} names paths outside the repository: {climbing}"


def test_every_docs_file_named_exists_and_every_cited_heading_is_there():
    docs = {doc.stem: headings(doc) for doc in DOCS}
    missing, unknown = set(), set()
    for path in code_and_pages():
        text = path.read_text(errors="replace")
        where = str(path.relative_to(ROOT))
        missing |= {(where, name) for name in DOC_NAME.findall(text) if name not in docs}
        for name, heading in CITATION.findall(text):
            # a heading is cited whole, or by the part before its colon or its parenthesis
            if name in docs and not any(
                h == heading or h.startswith((heading + ":", heading + " (")) for h in docs[name]
            ):
                unknown.add((where, name, heading))
    assert not missing, sorted(missing)
    assert not unknown, sorted(unknown)


def test_the_readme_indexes_every_doc():
    readme = (ROOT / "README.md").read_text()
    linked = {Path(target).name for target in LINK.findall(readme) if target.startswith("docs/")}
    assert {doc.name for doc in DOCS} <= linked, sorted({doc.name for doc in DOCS} - linked)


def tree_entries(tree: str) -> dict[str, dict[str, str]]:
    """The tree's entries under each package: {package: {first column: the entry's whole text}}.

    An entry starts on a line indented by two spaces (``  clickme/   the ClickMe ...``) and goes on
    over the deeper-indented lines after it; a package starts on an unindented ``package/`` line."""
    entries: dict[str, dict[str, str]] = {}
    package = key = None
    for line in tree.splitlines():
        if re.match(r"\S", line):
            first = line.split()[0]
            package, key = (first.rstrip("/") if first.endswith("/") else None), None
            entries.setdefault(package, {})
        elif package and re.match(r"  \S", line):
            key = line[:38].strip()
            entries[package][key] = line
        elif package and key:
            entries[package][key] += "\n" + line
    return entries


def test_the_architecture_names_every_module_and_no_missing_file():
    text = ARCHITECTURE.read_text()
    start = text.index("## The tree")
    tree = text[start : text.index("\n## ", start + 1)]
    entries = tree_entries(tree)
    unnamed = []
    for package in ("harmonization", "attacks_torch"):
        for path in sorted((ROOT / package).rglob("*.py")):
            inner = path.relative_to(ROOT / package).parts
            if "__pycache__" in path.parts or path.name == "__init__.py":
                continue
            if len(inner) == 1:  # a module of the package: its name in an entry's first column
                named = any(re.search(rf"\b{re.escape(path.name)}\b", key) for key in entries[package])
            else:  # a module of a sub-package: its name in that folder's entry
                entry = entries[package].get(f"{inner[0]}/", "")
                named = re.search(rf"\b{re.escape(path.name)}\b", entry) is not None
            if not named:
                unnamed.append(str(path.relative_to(ROOT)))
    assert not unnamed, f"docs/architecture.md does not name: {unnamed}"
    stale = [
        f"{package}/{key if key.endswith('/') else ''}{name}"
        for package in ("harmonization", "attacks_torch")
        for key, entry in entries[package].items()
        for name in re.findall(r"(?<![/\w])[\w-]+\.py\b", entry if key.endswith("/") else key)
        if not (ROOT / package / (key if key.endswith("/") else "") / name).is_file()
    ]
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"
    present = {path.name for path in repository_files()}
    gone = sorted(set(re.findall(r"\b[\w-]+\.(?:py|sh)\b", tree)) - present)
    assert not gone, f"docs/architecture.md names files that do not exist: {gone}"


def test_the_readme_names_every_extra_and_every_make_target():
    readme = (ROOT / "README.md").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not [name for name in extras if f"'.[{name}]'" not in readme], sorted(extras)
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)[1].split()
    assert phony and not [target for target in phony if f"make {target}" not in readme], phony
