"""The installed distribution: version, public surface, typing marker, layering."""

from __future__ import annotations

import importlib
import importlib.metadata
import pathlib

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


@pytest.mark.parametrize(
    "name", ["ratekit", "ratekit.typing", "ratekit.testing", "ratekit.telemetry", "ratekit_cxone"]
)
def test_all_is_sorted_and_importable(name):
    """Every public module lists a sorted __all__ whose names all exist."""
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for attribute in module.__all__:
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
