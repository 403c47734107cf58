"""The README and docs/*.md hold together: every relative link resolves (a file of the
repository, and a heading of a Markdown page when it names one), and every ``python -m MODULE``
and ``rdbss COMMAND ...`` the pages name exists (the module can be found; the command and its
first positional choices are the parser's)."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

from rdbss.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_PYTHON_M = re.compile(r"python3? -m ([A-Za-z_][\w.{},]*)")
#: a command line starting with rdbss: at the start of a line, after a prompt, ``;`` or ``$(``
_RDBSS = re.compile(r"(?:^|^\$ |; *|\$\()(?:\.venv/bin/)?rdbss((?: +[^\s`;#|&)]+)+)", re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text())
    return {_slug(m) for m in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M)}


def _links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text())
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_pages_exist() -> None:
    names = {p.name for p in PAGES}
    for page in ("cli.md", "python.md", "routines.md", "architecture.md", "performance.md"):
        assert page in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    for target in _links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: no heading #{anchor} in {path}"


def _modules(text: str) -> set[str]:
    found = set()
    for name in _PYTHON_M.findall(text):
        name = name.rstrip(".,")
        brace = re.fullmatch(r"(.*)\{(.*)\}(.*)", name)
        parts = brace.group(2).split(",") if brace else [""]
        found |= {f"{brace.group(1)}{p}{brace.group(3)}" if brace else name for p in parts}
    return found


def test_every_python_m_module_exists() -> None:
    modules = set().union(*(_modules(p.read_text()) for p in PAGES))
    assert "benchmarks" in modules and "rdbss.faultproxy" in modules
    for module in sorted(modules):
        assert importlib.util.find_spec(module) is not None, f"python -m {module}: no module"


def _subcommands(parser: argparse.ArgumentParser) -> argparse.Action | None:
    """The parser's first positional argument: a subcommand or an action with choices."""
    positionals = [a for a in parser._actions if not a.option_strings]
    return positionals[0] if positionals else None


def _check_command(parser: argparse.ArgumentParser, tokens: list[str], line: str) -> None:
    takes_value = {o for o, a in parser._option_string_actions.items() if a.nargs != 0}
    words = iter(tokens)
    for word in words:
        if word.startswith("-"):
            if word in takes_value and "=" not in word:
                next(words, None)
            continue
        if not re.fullmatch(r"[a-z][a-z-]*", word):  # a placeholder (COMMAND), a path
            return
        first = _subcommands(parser)
        if first is None or first.choices is None:
            return
        assert word in first.choices, f"rdbss{line}: {word!r} is not one of {list(first.choices)}"
        if isinstance(first, argparse._SubParsersAction):
            _check_command(first.choices[word], list(words), line)
        return


def _code(text: str) -> str:
    """The code of a page: its fenced blocks and inline code spans, one a line."""
    blocks = [m.group(0) for m in _FENCE.finditer(text)]
    spans = re.findall(r"`([^`\n]+)`", _FENCE.sub("", text))
    return "\n".join(blocks + spans)


def test_every_rdbss_command_exists() -> None:
    parser = build_parser()
    commands = [m for p in PAGES for m in _RDBSS.findall(_code(p.read_text()))]
    assert len(commands) > 50
    for line in commands:
        _check_command(parser, line.split(), line)
