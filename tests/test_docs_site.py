"""Build the documentation site and read it as a visitor would.

The build runs ``mkdocs build --strict``, so any warning fails it; the tests then read
the HTML it wrote and check what a warning cannot see:

- every public class and function (the ``__all__`` of each public module) has a rendered
  signature with the parameters of its runtime signature, and a parameter that has a
  default shows it (in the signature and in the table of parameters), with no private
  name in a parameter's type;
- no reStructuredText is printed as text (``.. directive::`` lines, ``::`` markers);
- every local link leads to a page of the site, and its anchor to an element of it.

It needs the ``docs`` extra, so it carries the ``docs_site`` marker, which the regular
runs leave out (``addopts`` in pyproject.toml); tox's ``docs`` environment runs it with
``pytest -m docs_site tests/test_docs_site.py``.  Without MkDocs it fails.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.docs_site

ROOT = Path(__file__).resolve().parent.parent

#: The modules whose ``__all__`` is the public API.
PUBLIC_MODULES = [
    "ratekit",
    "ratekit.retry",
    "ratekit.http",
    "ratekit.stores",
    "ratekit.typing",
    "ratekit.testing",
    "ratekit.telemetry",
    "ratekit.integrations.requests",
    "ratekit.integrations.httpx",
    "ratekit.integrations.aiohttp",
    "ratekit_cxone",
    "ratekit_cxone.simulator",
]

#: Tags whose text is code, not prose.
_CODE_TAGS = frozenset({"code", "pre", "script", "style", "kbd", "samp"})

#: Tags that end a run of prose.
_BLOCK_TAGS = frozenset(
    {"p", "li", "td", "th", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "div", "br", "tr"}
)

#: reStructuredText a Markdown renderer prints as it is.
_RST = [
    (re.compile(r"(?:^|\s)\.\. [a-zA-Z][\w-]*::"), "an rST directive"),
    (re.compile(r"\S::(?:\s|$)"), "an rST literal-block marker '::'"),
]


class Page(HTMLParser):
    """What the tests read from one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: set[str] = set()
        self.links: list[str] = []
        #: The text of each rendered signature, under the id of the heading above it.
        self.signatures: dict[str, list[str]] = {}
        #: The rows of each table of parameters (cells as text), likewise.
        self.parameters: dict[str, list[list[str]]] = {}
        self.prose: list[str] = []
        #: The ids of the headings followed by a paragraph before the next heading.
        self.described: set[str] = set()
        self._paragraph = 0
        self._heading: str | None = None
        self._divs: list[str] = []
        self._signature: list[str] | None = None
        self._signature_depth = 0
        self._code = 0
        self._line: list[str] = []
        self._section_title: list[str] | None = None
        self._parameters_next = False
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: C901, PLR0912 - one branch per thing read
        """Record anchors, links, headings, signatures and tables."""
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        for key in ("id", "name"):
            if attributes.get(key):
                self.anchors.add(str(attributes[key]))
        if tag == "a" and attributes.get("href") is not None:
            self.links.append(str(attributes["href"]))
        if re.fullmatch(r"h[1-6]", tag) and "doc-heading" in classes:
            self._heading = attributes.get("id")
        if tag == "div":
            self._divs.append("signature" if "doc-signature" in classes else "")
            if "doc-signature" in classes:
                self._signature, self._signature_depth = [], len(self._divs)
        if tag == "span" and "doc-section-title" in classes:
            self._section_title = []
        if tag == "table" and self._parameters_next:
            self._rows, self._parameters_next = [], False
        if tag == "tr" and self._rows is not None:
            self._rows.append([])
        if tag == "td" and self._rows is not None:
            self._cell = []
        if tag == "p":
            self._paragraph += 1
        if tag in _CODE_TAGS:
            self._code += 1
        if tag in _BLOCK_TAGS:
            self._end_line()

    def handle_endtag(self, tag: str) -> None:  # noqa: C901 - one branch per thing read
        """Close what the start tags opened."""
        if tag == "div" and self._divs:
            if self._signature is not None and len(self._divs) == self._signature_depth:
                if self._heading is not None:
                    text = "".join(self._signature).strip()
                    self.signatures.setdefault(self._heading, []).append(text)
                self._signature = None
            self._divs.pop()
        if tag == "span" and self._section_title is not None:
            self._parameters_next = "".join(self._section_title).strip() == "Parameters:"
            self._section_title = None
        if tag == "td" and self._cell is not None and self._rows:
            self._rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "table" and self._rows is not None:
            if self._heading is not None:
                self.parameters.setdefault(self._heading, []).extend(r for r in self._rows if r)
            self._rows = None
        if tag == "p" and self._paragraph:
            self._paragraph -= 1
        if tag in _CODE_TAGS and self._code:
            self._code -= 1
        if tag in _BLOCK_TAGS:
            self._end_line()

    def handle_data(self, data: str) -> None:
        """Collect signature text, cell text and prose."""
        if self._signature is not None:
            self._signature.append(data)
        if self._section_title is not None:
            self._section_title.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if not self._code:
            self._line.append(data)
        if self._paragraph and self._heading is not None and data.strip():
            self.described.add(self._heading)

    def _end_line(self) -> None:
        text = " ".join("".join(self._line).split())
        if text:
            self.prose.append(text)
        self._line = []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built by ``mkdocs build --strict`` into a temporary directory."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("MkDocs is not installed: install the docs extra (pip install -e '.[docs]')")
    directory = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(directory)]
    built = subprocess.run(  # noqa: S603 - our own interpreter, our own arguments
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if built.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{built.stdout}\n{built.stderr}")
    return directory


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[str, Page]:
    """Every HTML page of the site, read, by its path in the site."""
    read: dict[str, Page] = {}
    for path in sorted(site.rglob("*.html")):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        page.close()
        read[path.relative_to(site).as_posix()] = page
    return read


def public_names() -> Iterator[tuple[str, object]]:
    """``(dotted name, object)`` for every name in a public ``__all__``."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            yield f"{module_name}.{name}", getattr(module, name)


def public_objects() -> Iterator[tuple[str, object]]:
    """``(dotted name, object)`` for every class and function in a public ``__all__``."""
    for name, obj in public_names():
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield name, obj


def runtime_signature(obj: object) -> inspect.Signature | None:
    """The signature a caller uses, or None for what is not called (protocols, enums)."""
    if inspect.isclass(obj) and (getattr(obj, "_is_protocol", False) or issubclass(obj, enum.Enum)):
        return None
    try:
        return inspect.signature(obj)  # type: ignore[arg-type]
    except ValueError:  # an exception class that keeps BaseException's constructor
        return None


def split_parameters(signature: str) -> list[str]:
    """The parameters of a rendered signature, as written (``name: type = default``)."""
    start = signature.index("(")
    parts: list[str] = []
    depth, quote, current = 0, "", []
    for char in signature[start + 1 :]:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def _name_of(parameter: str) -> str:
    return re.split(r"[:=]", parameter, maxsplit=1)[0].strip()


def _has_default(parameter: str) -> bool:
    depth = 0
    for char in parameter:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "=" and depth == 0:
            return True
    return False


def _without_strings(text: str) -> str:
    return re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)


def _expected(signature: inspect.Signature) -> list[str]:
    names = []
    for parameter in signature.parameters.values():
        prefix = {
            inspect.Parameter.VAR_POSITIONAL: "*",
            inspect.Parameter.VAR_KEYWORD: "**",
        }.get(parameter.kind, "")
        names.append(prefix + parameter.name)
    return names


def signature_problems(name: str, obj: object, pages: dict[str, Page]) -> list[str]:  # noqa: C901
    """What is wrong with the rendered signature of *obj* (nothing: an empty list)."""
    expected = runtime_signature(obj)
    if expected is None:
        return []
    found = [page for page in pages.values() if name in page.anchors]
    if not found:
        return [f"{name}: no entry in the API reference"]
    rendered = [text for page in found for text in page.signatures.get(name, [])]
    short = name.rsplit(".", 1)[-1]
    rendered = [text for text in rendered if text.startswith(f"{short}(")]
    if not rendered:
        return [f"{name}: no rendered signature"]
    # Overloads come first; the last signature is the one that takes every call.
    parameters = [p for p in split_parameters(rendered[-1]) if p not in {"*", "/"}]
    problems = []
    names = [_name_of(p) for p in parameters]
    if names != _expected(expected):
        problems.append(f"{name}: renders ({', '.join(names)}), takes {expected}")
    rows = {row[0]: row for page in found for row in page.parameters.get(name, []) if row}
    for parameter in expected.parameters.values():
        if parameter.default is inspect.Parameter.empty:
            continue
        shown = [p for p in parameters if _name_of(p) == parameter.name]
        if shown and not _has_default(shown[0]):
            problems.append(f"{name}: {parameter.name} has a default, rendered as required")
        row = rows.get(parameter.name)
        if row is not None and row[-1] == "required":
            problems.append(f"{name}: {parameter.name} has a default, listed as required")
    for parameter in parameters:
        annotation = _without_strings(parameter.partition(":")[2].partition("=")[0])
        if re.search(r"(?<![\w.])_[A-Za-z]\w*", annotation):
            problems.append(f"{name}: a private name in {parameter!r}")
    return problems


def test_public_objects_show_their_signature(pages: dict[str, Page]):
    """Each public class and function shows its runtime parameters, with defaults."""
    objects = list(public_objects())
    assert len(objects) > 100  # the walk found the API, not an empty list
    problems = [
        problem for name, obj in objects for problem in signature_problems(name, obj, pages)
    ]
    assert problems == []


def test_public_names_are_described(pages: dict[str, Page]):
    """Each public name, constants included, has an entry with a description."""
    described = set().union(*(page.described for page in pages.values()))
    names = [name for name, _ in public_names()]
    assert len(names) > 120
    assert sorted(set(names) - described) == []


def test_attrs_classes_show_types_and_defaults(pages: dict[str, Page]):
    """An attrs class's table of parameters has a type for each and the defaults."""
    rows = {
        row[0]: row
        for page in pages.values()
        for row in page.parameters.get("ratekit.retry.RetryPolicy", [])
    }
    assert rows["attempts"][1:2] == ["int"]
    assert rows["attempts"][-1] == "5"
    assert rows["backoff"][-1] == "ExponentialBackoff()"


def test_no_restructuredtext_is_printed(pages: dict[str, Page]):
    """No page prints an rST directive or a literal-block marker as text."""
    found = [
        f"{path}: {what}: {line!r}"
        for path, page in pages.items()
        for line in page.prose
        for pattern, what in _RST
        if pattern.search(line)
    ]
    assert found == []


def test_the_site_shows_the_version_and_the_extras(site: Path):
    """The installed version is in the site's name; Installing lists every extra."""
    version = importlib.metadata.version("ratekit")
    assert f"ratekit {version}" in (site / "index.html").read_text(encoding="utf-8")
    install = (site / "install" / "index.html").read_text(encoding="utf-8")
    extras = importlib.metadata.metadata("ratekit").get_all("Provides-Extra") or []
    assert extras
    assert [extra for extra in extras if f"<td><code>{extra}</code></td>" not in install] == []


def resolve(site: Path, page: str, href: str) -> tuple[str, str] | None:
    """The site path and the anchor a local link leads to; None for an external one."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith("mailto:"):
        return None
    base = PurePosixPath(page).parent
    target = PurePosixPath(page) if not parts.path else base / unquote(parts.path)
    resolved = os.path.normpath(target.as_posix()).replace(os.sep, "/")
    if (site / resolved).is_dir():
        resolved = f"{resolved}/index.html".removeprefix("./")
    return resolved, unquote(parts.fragment)


def test_local_links_lead_somewhere(site: Path, pages: dict[str, Page]):
    """Every local link names a file of the site, and an anchor that the page has."""
    broken = []
    for path, page in pages.items():
        if path == "404.html":
            continue  # served at any depth: its links are absolute to the site's root
        for href in page.links:
            target = resolve(site, path, href)
            if target is None:
                continue
            file, anchor = target
            if file.startswith("..") or not (site / file).is_file():
                broken.append(f"{path}: {href} (no {file})")
            elif anchor and file in pages and anchor not in pages[file].anchors:
                broken.append(f"{path}: {href} (no #{anchor} in {file})")
    assert broken == []
