"""Every ```python block of README.md and docs/**/*.md compiles, and whole programs are run.

A block is either a fragment, marked by a ``<!-- fragment -->`` line just before it (it must
compile, and that is all), or a whole program: then it is a file under ``examples/`` or
``docs/examples/``, shown identically (README.md, which GitHub renders as it is) or included
with pymdownx.snippets (``--8<-- "docs/examples/quickstart.py"`` inside the block, in docs/),
and that file is run by a test: tests/docs/test_programs.py (its ``RUN_HERE``), or, for
``examples/``, a test under tests/ that starts it by name.
"""

from __future__ import annotations

import pathlib
import re
from typing import NamedTuple

import pytest

from tests.docs.test_programs import RUN_HERE

ROOT = pathlib.Path(__file__).resolve().parents[2]
FRAGMENT = "<!-- fragment -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
INCLUDE = re.compile(r'^[ \t]*-+8<-+[ \t]+"(?P<path>[^"]+)"[ \t]*$')  # pymdownx.snippets, base_path "."
PROGRAM_FOLDERS = ("examples/", "docs/examples/")


class Block(NamedTuple):
    path: pathlib.Path
    line: int
    language: str
    text: str
    fragment: bool

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[pathlib.Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_blocks(path: pathlib.Path) -> list[Block]:
    """The fenced blocks of a markdown file, dedented to their fence (blocks nest in lists)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:end]]
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        info = opening.group("info").split()
        blocks.append(Block(path, i + 1, info[0].lower() if info else "", "\n".join(body), before == FRAGMENT))
        i = end + 1
    return blocks


def python_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in code_blocks(path) if block.language in ("python", "py")]


def included(block: Block) -> list[str]:
    """The files a block includes with pymdownx.snippets (repository-relative paths)."""
    return [match.group("path") for line in block.text.splitlines() if (match := INCLUDE.match(line))]


def source(block: Block) -> str:
    """The block as the reader sees it: includes replaced by the files."""
    return "\n".join(
        (ROOT / match.group("path")).read_text(encoding="utf-8") if (match := INCLUDE.match(line)) else line
        for line in block.text.splitlines()
    )


def programs() -> dict[str, str]:
    """Every file a whole program may be: repository-relative path → text."""
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for folder in PROGRAM_FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
    }


def _tests_text() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py") if "docs" not in path.parts
    )


def is_run_by_a_test(relative: str, tests_text: str) -> bool:
    """In ``RUN_HERE``, or an ``examples/`` file (or a module of an ``examples/`` package) that a test names."""
    if relative in RUN_HERE:
        return True
    parts = pathlib.PurePosixPath(relative).with_suffix("").parts
    if parts[0] != "examples":
        return False
    if parts[-1] == "__init__":
        parts = parts[:-1]
    owner = parts[:2]  # examples/NAME.py, or the package examples/NAME/ that holds the module
    names = [".".join(owner), "/".join(owner) + (".py" if len(parts) == 2 else "/")]
    if len(parts) == 2:
        names += [f'example("{parts[1]}"', f'example_process("{parts[1]}"']
    return any(re.search(re.escape(name) + r"(?![\w])", tests_text) for name in names)


BLOCKS = python_blocks()


def test_the_pages_have_blocks_of_both_kinds():
    readme = [block for block in BLOCKS if block.path.name == "README.md"]
    assert len([block for block in readme if not block.fragment]) >= 3  # the three quickstarts
    assert any(block.fragment for block in BLOCKS) and any(included(block) for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_every_python_block_compiles(block):
    compile(source(block), str(block), "exec")


@pytest.mark.parametrize("block", [block for block in BLOCKS if not block.fragment], ids=str)
def test_a_whole_program_is_a_file_that_a_test_runs(block):
    files = programs()
    paths = included(block)
    if paths:
        assert block.path.name != "README.md", f"{block}: GitHub does not include files; paste the file"
        unknown = [path for path in paths if path not in files]
        assert not unknown, f"{block}: includes {unknown}, which are not under {PROGRAM_FOLDERS}"
        assert len(paths) == len(block.text.strip().splitlines()), f"{block}: an include and more; mark a fragment"
    else:
        text = block.text.strip()
        paths = [path for path, content in files.items() if content.strip() == text]
        assert paths, (
            f"{block}: not identical to any file under {PROGRAM_FOLDERS}: make it one (and run it in a test), "
            f"include one, or mark it as a fragment with {FRAGMENT!r} on the line before"
        )
    tests_text = _tests_text()
    for path in paths:
        assert is_run_by_a_test(path, tests_text), f"{block}: {path} is run by no test"


def test_every_include_names_an_existing_file():
    for path in markdown_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = INCLUDE.match(line)
            if match:
                assert (ROOT / match.group("path")).is_file(), f"{path.relative_to(ROOT)}:{number}: {line}"
