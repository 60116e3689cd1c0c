"""``lpips_runtime.__version__`` comes from the installed metadata, with a plain fallback."""
from __future__ import annotations

import importlib.metadata

import lpips_runtime
from lpips_runtime import version


def test_version_is_the_installed_metadata():
    version.package_version.cache_clear()
    assert lpips_runtime.__version__ == importlib.metadata.version("lpips-rt")
    assert "__version__" in dir(lpips_runtime)


def test_fallback_when_not_installed(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    version.package_version.cache_clear()
    try:
        assert version.package_version() == "0+unknown"
    finally:
        version.package_version.cache_clear()
