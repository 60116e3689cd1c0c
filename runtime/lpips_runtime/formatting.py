"""One number format for every output: distances are float32, written with the shortest decimal that
reads back as the same float32 (CSV, JSON, JSON lines); six decimals only in the line meant for people."""
from __future__ import annotations

import numpy as np


def float32_text(value: float) -> str:
    """The shortest decimal string that parses back to ``np.float32(value)`` (e.g. ``0.14583078``)."""
    return str(np.float32(value))


def float32_json(value: float | None) -> float | None:
    """``value`` as the float whose JSON form (``repr``) is ``float32_text(value)``; None stays None."""
    return None if value is None else float(float32_text(value))


def human(value: float) -> str:
    """The short form for a person reading a terminal: six decimals, as the official scripts print."""
    return f"{value:.6f}"
