"""The repository explains itself: imports follow the pipeline's stages, every document the code cites
is in docs/ and has the section it names, every link of the documentation resolves, and nothing
points at material outside the repository."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("wrn", "experiments", "analysis", "benchmarks")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh", ".cfg", ".txt", ".csv", ""}


def tracked_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in names.splitlines() if (REPO / name).suffix in TEXT_SUFFIXES
            and (REPO / name).is_file()]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def imports(path: Path) -> list[tuple[ast.stmt, set[str], bool]]:
    """Every import statement of `path`: the statement, the suite modules it names, and whether it
    sits at the top of the module."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        out.append((node, {n for n in names if n in MODULES}, id(node) in top))
    return out


GRAPH = {name: set().union(*(mods for _, mods, _ in imports(path))) - {name} for name, path in MODULES.items()}


def test_no_module_imports_a_module_that_imports_it():
    """Import cycles, including those hidden in functions, would make the stages' order a fiction."""
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in GRAPH[start] - seen:
            seen.add(nxt)
            if nxt == goal or reaches(nxt, goal, seen):
                return True
        return False

    cyclic = sorted(name for name in GRAPH if reaches(name, name, set()))
    assert cyclic == [], f"modules on an import cycle: {cyclic}"


def test_the_library_knows_nothing_of_specs_clusters_or_tables():
    outside = {f"{name} imports {dep}" for name, deps in GRAPH.items() if name.startswith("wrn")
               for dep in deps if not dep.startswith("wrn")}
    assert not outside


# The command line: the one module of experiments that orchestrates launching and reporting together.
TOP_LAYER = {"experiments.run"}


def test_the_flow_runs_one_way_from_the_library_through_experiments_to_analysis():
    """wrn <- experiments <- analysis: a module of experiments that imported analysis would make the
    two packages one (every import counts, deferred ones too); only the command line joins them."""
    upstream = {f"{name} imports {dep}" for name, deps in GRAPH.items()
                if name.startswith("experiments") and name not in TOP_LAYER
                for dep in deps if dep.startswith("analysis")}
    assert not upstream


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_sit_at_the_top_unless_deferred_with_a_reason(name):
    path = MODULES[name]
    lines = path.read_text().splitlines()
    for node, _, at_top in imports(path):
        if not at_top:
            line = lines[node.lineno - 1]
            assert "# deferred:" in line, f"{path.name}:{node.lineno}: an import inside a function without " \
                                          f"'# deferred: <reason>': {line.strip()}"


# --------------------------------------------------------------------------------------------------
# What the repository cites

OUTSIDE_MATERIAL = re.compile(r"wrn-paper\.md|peers\.md|docs_tmp|slurm-single-node|\.\./shared|/work/")
ISSUE_NUMBERS = re.compile(r"\bissues? \d+(\.\d+)?\b|\bthe issue's\b")
DEVELOPMENT_WORDS = re.compile(ISSUE_NUMBERS.pattern + r"|\bsessions?\b|\blent\b")


@pytest.mark.parametrize("path", tracked_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_cites_material_outside_the_repository(path):
    if path == Path(__file__).resolve():
        return
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if OUTSIDE_MATERIAL.search(line)]
    assert not hits, f"{path.name} cites material that is not in the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize("path", tracked_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_repository_speaks_about_the_software(path):
    """No issue numbers, sessions or machines lent: the README, docs, code and tests speak about the
    software (in tests, "session" is pytest's fixture scope)."""
    if path == Path(__file__).resolve():
        return
    words = ISSUE_NUMBERS if path.is_relative_to(REPO / "tests") else DEVELOPMENT_WORDS
    hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if words.search(line)]
    assert not hits, "\n".join(hits)


def headings(markdown: Path) -> dict[str, str]:
    """Heading text -> its GitHub anchor, for every heading of a Markdown file."""
    out = {}
    for line in markdown.read_text().splitlines():
        match = re.match(r"#+ (.*)", line)
        if match:
            text = match.group(1).strip()
            anchor = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            out[text] = anchor
    return out


DOC_CITATION = re.compile(r"docs/([\w-]+\.md)(?:, \"([^\"]+)\")?")


def test_every_cited_document_and_section_exists():
    """`docs/paper.md, "Recipe"` in a docstring must lead to a file and a heading that are there."""
    missing = []
    for path in tracked_files():
        for name, section in DOC_CITATION.findall(path.read_text()):
            section = " ".join(section.lstrip("#").split())  # a citation may wrap, or be a comment's
            doc = REPO / "docs" / name
            if not doc.is_file():
                missing.append(f"{path.relative_to(REPO)}: docs/{name}")
            elif section and section not in headings(doc):
                missing.append(f"{path.relative_to(REPO)}: docs/{name}, section {section!r}")
    assert not missing, "\n".join(missing)


MARKDOWN = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_of_the_documentation_resolves(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (doc.parent / file).resolve() if file else doc
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in headings(resolved).values():
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def test_the_architecture_page_names_every_module():
    """docs/architecture.md is the map of the code: each module by its path, or by its file name in a
    line that names its folder (`experiments/estimate.py`, `rates.py`)."""
    lines = (REPO / "docs" / "architecture.md").read_text().splitlines()
    unnamed = []
    for path in MODULES.values():
        relative = path.relative_to(REPO)
        if relative.name == "__init__.py":
            continue
        folder = f"{relative.parent.as_posix()}/"
        if not any(str(relative) in line or (f"`{relative.name}`" in line and folder in line) for line in lines):
            unnamed.append(str(relative))
    assert not unnamed, f"modules docs/architecture.md does not name: {unnamed}"


def test_no_module_is_over_500_lines():
    """A module does one job; one that grows past this is doing two."""
    long = {str(p.relative_to(REPO)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > 500}
    assert not long
