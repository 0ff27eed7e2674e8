"""MkDocs hooks: the version in the site's name, and the list of examples.

The version is the installed distribution's (``importlib.metadata``), so the site says
which release it documents.  ``docs/examples.md`` holds the line ``<!-- examples -->``,
which becomes a list of the runnable scripts in ``examples/``, each with the first line
of its docstring, so that a new example shows up without editing the page.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/ratekit/ratekit/blob/main/"
MARKER = "<!-- examples -->"


def on_config(config: Any, **kwargs: Any) -> Any:  # noqa: ANN401, ARG001 - MkDocs' hook signature
    """Put the installed version in the site's name."""
    config["site_name"] = (
        f"{config['site_name']} {importlib.metadata.version('ratekit')}"
    )
    return config


def examples_list() -> str:
    """A Markdown list of the example scripts, each with its docstring's summary."""
    lines = []
    for path in sorted((ROOT / "examples").glob("*.py")):
        if path.name.startswith("_"):
            continue  # a helper of the examples, not one of them
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        summary = docstring.split("\n\n", 1)[0].replace("\n", " ").strip()
        lines.append(f"- [`{path.name}`]({REPOSITORY}examples/{path.name}): {summary}")
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs: object) -> str:  # noqa: ARG001 - MkDocs' hook signature
    """Fill in the list of examples."""
    if MARKER in markdown:
        return markdown.replace(MARKER, examples_list())
    return markdown
