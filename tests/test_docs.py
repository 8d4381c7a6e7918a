"""The documentation stays true: every ```python block of docs/python.md
runs, every relative link between the docs pages (and from README.md)
resolves, and nothing points outside the repository to ../shared."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block of a markdown file."""
    out, code, start = [], None, 0
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if code is None and line.strip() == "```python":
            code, start = [], k
        elif code is not None and line.strip() == "```":
            out.append((start, "\n".join(code) + "\n"))
            code = None
        elif code is not None:
            code.append(line)
    return out


BLOCKS = python_blocks(DOCS / "python.md")


def test_python_md_has_examples_for_every_potential_kind():
    from jaxpot.potentials import registry

    text = (DOCS / "python.md").read_text()
    for kind in registry.names():
        assert f"### `{kind}`" in text or f"`{kind}` and" in text or f"and `{kind}`" in text, kind


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"python.md:{n}" for n, _ in BLOCKS])
def test_python_md_block_runs(line, code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/python.md:{line}", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out.strip(), "the example prints nothing"


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub-style anchors of a markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            title = m.group(1).strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            out.add(title.replace(" ", "-"))
    return out


def test_relative_links_between_docs_pages_resolve():
    bad = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{page.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_readme_links_to_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md does not link to {missing}"


def _repo_text_files():
    yield ROOT / "README.md"
    yield from DOCS.rglob("*.md")
    for folder in ("jaxpot", "tests", "notebooks"):
        for p in (ROOT / folder).rglob("*"):
            if p.suffix in (".py", ".md", ".ipynb", ".toml") and p.is_file():
                yield p
    yield from (ROOT / "experiments").glob("*.py")


def outside_references() -> list[str]:
    bad = []
    for p in _repo_text_files():
        if p == Path(__file__).resolve():
            continue
        for k, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if "shared/API.md" in line or "../shared" in line:
                bad.append(f"{p.relative_to(ROOT)}:{k}: {line.strip()[:100]}")
    return bad


def test_nothing_refers_to_files_outside_the_repository():
    bad = outside_references()
    assert not bad, "references to ../shared (the docs are in docs/ now):\n" + "\n".join(bad)


def test_docs_and_readme_do_not_refer_to_shared():
    bad = [b for b in outside_references() if b.startswith(("docs/", "README.md", "tests/conftest.py",
                                                              "jaxpot/__init__.py"))]
    assert not bad, "\n".join(bad)
