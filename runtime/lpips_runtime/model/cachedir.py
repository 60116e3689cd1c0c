"""Where lpips-rt keeps files it can rebuild (converted weights, compiled OpenVINO models): one rule for
the export package and the runtime."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LPIPS_RT_CACHE"


def default_cache_dir() -> Path:
    """``$LPIPS_RT_CACHE``, else ``$XDG_CACHE_HOME/lpips-rt``, else ``~/.cache/lpips-rt`` (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lpips-rt"
