"""Run the Python code in the documentation, so that the docs never rot.

Every fenced block whose info string starts with ``python`` is executed; the blocks of
one file run in order in one namespace, so a later block can use the names of an earlier
one.  Code that is not meant to run goes in a block marked ``text``, ``pycon``,
``console`` or anything else.  No line of a code block of the site may be wider than
its content column, where it would scroll.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import ratekit
import ratekit.http
import ratekit.integrations.aiohttp
import ratekit.integrations.httpx
import ratekit.integrations.requests
import ratekit.retry
import ratekit.stores
import ratekit.telemetry
import ratekit_cxone
import ratekit_cxone.simulator

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]

#: The width of the site's content column, in characters of code: a longer line scrolls.
CODE_WIDTH = 88

#: An opening fence: indentation, three or more backticks (or tildes), the info string.
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")


def fenced_blocks(markdown: str) -> list[tuple[int, list[str], list[str]]]:
    """Return ``(line number of the first code line, info words, lines)`` for each block.

    The lines are those between the fences, without the indentation of the opening one.
    """
    blocks: list[tuple[int, list[str], list[str]]] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, indent = opening["fence"], opening["indent"]
        words = opening["info"].split()
        first = index
        # The block ends at a closing fence of the same kind, at least as long.
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(fence) and set(closing) == {fence[0]}:
                break
            index += 1
        body = [line.removeprefix(indent) for line in lines[first:index]]
        index += 1
        blocks.append((first + 1, words, body))
    return blocks


def python_blocks(markdown: str) -> list[tuple[int, str]]:
    """Return ``(line number of the first code line, code)`` for each python block."""
    return [
        (line, textwrap.dedent("\n".join(body)) + "\n")
        for line, words, body in fenced_blocks(markdown)
        if words and words[0] == "python"
    ]


def test_python_blocks_are_found_and_others_skipped():
    """Only ``python`` blocks are extracted, with their line numbers, indented or not."""
    markdown = textwrap.dedent(
        """\
        # Title

        ```python
        a = 1
        ```

        ```text
        not = python
        ```

        !!! note
            ```python title="indented.py"
            b = a + 1
            ```

        ````pycon
        >>> ```python
        ````
        """
    )
    assert python_blocks(markdown) == [(4, "a = 1\n"), (13, "b = a + 1\n")]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_document_code_runs(document: Path):
    """Every python block of the document runs without error, in order, in one namespace."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    for line, code in python_blocks(document.read_text(encoding="utf-8")):
        # Pad with blank lines so that a traceback points at the line in the document.
        compiled = compile("\n" * (line - 1) + code, str(document), "exec")
        exec(compiled, namespace)  # noqa: S102 - running the documented code is the point


@pytest.mark.parametrize(
    "module",
    [
        ratekit,
        ratekit.retry,
        ratekit.http,
        ratekit.integrations.requests,
        ratekit.integrations.httpx,
        ratekit.integrations.aiohttp,
        ratekit.stores,
        ratekit.telemetry,
        ratekit_cxone,
        ratekit_cxone.simulator,
    ],
    ids=lambda module: module.__name__,
)
def test_api_reference_lists_every_public_name(module):
    """The API reference has an entry for every name in the module's ``__all__``."""
    pages = sorted((ROOT / "docs" / "api").glob("*.md"))
    api = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    entry = rf"^::: {re.escape(module.__name__)}\.(\w+)$"
    listed = set(re.findall(entry, api, flags=re.MULTILINE))
    assert sorted(set(module.__all__) - listed) == []


def test_site_code_fits_the_content_column():
    """No line of a code block of the site's pages is wider than the content column."""
    too_long = [
        f"{page.relative_to(ROOT).as_posix()}:{first + offset}: {len(line)} characters"
        for page in sorted((ROOT / "docs").rglob("*.md"))
        for first, _, body in fenced_blocks(page.read_text(encoding="utf-8"))
        for offset, line in enumerate(body)
        if len(line) > CODE_WIDTH
    ]
    assert too_long == []
