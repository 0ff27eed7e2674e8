"""The installed distribution: version, public surface, typing marker, layering."""

from __future__ import annotations

import importlib
import importlib.metadata
import pathlib
import pkgutil
import subprocess
import sys

import pytest

import ratekit
import ratekit_cxone


def test_version_comes_from_the_installed_metadata():
    """ratekit.__version__ is the installed distribution's version."""
    assert ratekit.__version__ == importlib.metadata.version("ratekit")
    assert ratekit_cxone.__version__ == ratekit.__version__


def test_unknown_attributes_raise_attribute_error():
    """Only __version__ is computed lazily; other names raise AttributeError."""
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ratekit.nope  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ratekit_cxone.nope  # type: ignore[attr-defined]


def public_modules():
    """Every module of both packages with no ``_`` part in its name, found by walking them."""
    names = []
    for package in (ratekit, ratekit_cxone):
        names.append(package.__name__)
        prefix = f"{package.__name__}."
        names.extend(found.name for found in pkgutil.walk_packages(package.__path__, prefix))
    return [name for name in names if not any(part.startswith("_") for part in name.split("."))]


def isort_order(name):
    """Ruff's RUF022 order: CONSTANTS, then Classes, then the rest; each group sorted."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_the_public_modules_are_the_documented_ones():
    """The walk finds every public module (so the test below covers them all)."""
    assert public_modules() == [
        "ratekit",
        "ratekit.http",
        "ratekit.integrations",
        "ratekit.integrations.aiohttp",
        "ratekit.integrations.httpx",
        "ratekit.integrations.requests",
        "ratekit.retry",
        "ratekit.stores",
        "ratekit.telemetry",
        "ratekit.testing",
        "ratekit.typing",
        "ratekit_cxone",
        "ratekit_cxone.simulator",
    ]


@pytest.mark.parametrize("name", public_modules())
def test_all_is_sorted_and_importable(name):
    """Every public module lists __all__ in one order, and every name in it exists.

    ``ratekit.integrations`` only groups the integrations (each a module of its own) and
    exports nothing itself.
    """
    module = importlib.import_module(name)
    exported = module.__all__ if name != "ratekit.integrations" else []
    assert getattr(module, "__all__", []) == exported
    assert exported == sorted(exported, key=isort_order)
    for attribute in exported:
        assert hasattr(module, attribute), attribute


@pytest.mark.parametrize("package", [ratekit, ratekit_cxone])
def test_packages_ship_py_typed(package):
    """Both packages carry the py.typed marker."""
    assert (pathlib.Path(package.__file__).parent / "py.typed").is_file()


def test_core_never_imports_the_adapter():
    """Imports point down only: nothing in ratekit imports ratekit_cxone."""
    root = pathlib.Path(ratekit.__file__).parent
    for path in root.rglob("*.py"):
        assert "ratekit_cxone" not in path.read_text(encoding="utf-8"), path


def test_library_code_never_reads_time_directly():
    """Outside the clock module, library code goes through the injected Clock."""
    for package in (ratekit, ratekit_cxone):
        root = pathlib.Path(package.__file__).parent
        for path in root.rglob("*.py"):
            if path.name == "_clock.py":
                continue
            text = path.read_text(encoding="utf-8")
            for call in ("time.time(", "time.monotonic(", "time.sleep(", "asyncio.sleep("):
                assert call not in text, f"{path} calls {call}"


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("ratekit", ("ratekit.http", "ratekit.stores", "ratekit.integrations", "urllib3")),
        ("ratekit.retry", ("ratekit.http", "ratekit.stores", "urllib3")),
        ("ratekit.stores", ("ratekit.http", "ratekit.integrations", "urllib3", "redis")),
        ("ratekit.http", ("ratekit.stores", "ratekit.integrations")),
        ("ratekit_cxone", ("ratekit.stores", "ratekit.integrations")),
    ],
)
def test_each_layer_imports_only_the_layers_below_it(module, forbidden):
    """The core needs neither HTTP nor the stores; the stores do not load the HTTP client.

    Checked in a fresh interpreter, so that what other tests imported does not count.
    """
    code = (
        f"import sys, {module}\n"
        f"loaded = [name for name in sys.modules if name.startswith({forbidden!r})]\n"
        "print(' '.join(sorted(loaded)))\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == []
