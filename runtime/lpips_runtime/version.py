"""The installed version of lpips-rt, read from the package metadata (one source: pyproject.toml)."""
from __future__ import annotations

from functools import lru_cache

DIST_NAME = "lpips-rt"
# A source tree used without being installed (e.g. tests on a plain checkout): a valid PEP 440
# version that sorts below every release and says plainly that it is unknown.
UNKNOWN_VERSION = "0+unknown"


@lru_cache(maxsize=1)
def package_version() -> str:
    """The version of the installed ``lpips-rt`` distribution, or ``UNKNOWN_VERSION``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DIST_NAME)
    except PackageNotFoundError:
        return UNKNOWN_VERSION
