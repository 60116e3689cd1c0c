"""Run settings checked once, with one-line errors: counts bounded by the machine, memory and pixel budgets,
tile sizes. The Scorer and every command line parse their settings here, so they agree on the rules."""
from __future__ import annotations

import os
import re

from .errors import LpipsError

# The default pixel limit of decoding (100 megapixels: a 12000x8000 photograph; larger ones need
# --max-pixels). Checked from the header, before any pixel is decoded.
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_WORK_MEMORY = 1 << 30  # Scorer(max_memory=): working memory of one batch or tile, and of the pairs decoded ahead
MIN_TILE = 16  # the deepest stride of every net: tile sides are multiples of it
WORKERS_PER_CPU = 4  # decoding threads wait on files as much as they compute; more than this only queue
TILE_MODES = ("auto", "off")

_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_PIXEL_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def available_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LpipsError(f"{name} must be a whole number, got {value!r}")
    return value


def check_batch_size(value) -> int:
    """Pairs per inference call: a whole number >= 1 (memory bounds it further, see ``max_memory``)."""
    if _whole("batch_size", value) < 1:
        raise LpipsError(f"batch_size={value}: use 1 or more pairs per batch")
    return value


def check_workers(value) -> int | None:
    """Decoding threads: None (default) or 1 .. WORKERS_PER_CPU x the CPUs available."""
    if value is None:
        return None
    high = WORKERS_PER_CPU * available_cpus()
    if not 1 <= _whole("workers", value) <= high:
        raise LpipsError(f"workers={value}: use 1..{high} decoding threads on this machine "
                         f"({available_cpus()} CPUs), or None for the default")
    return value


def check_threads(value) -> int | None:
    """Inference threads: None (one per physical core) or 1 .. the CPUs available (more only contend)."""
    if value is None:
        return None
    high = available_cpus()
    if not 1 <= _whole("threads", value) <= high:
        raise LpipsError(f"threads={value}: this machine has {high} CPUs available to this process: use 1..{high}, "
                         "or None for one per physical core")
    return value


def check_max_memory(value) -> int:
    """The working-memory budget in bytes: a whole number >= 1 MiB."""
    if _whole("max_memory", value) < 1 << 20:
        raise LpipsError(f"max_memory={value} bytes: give at least 1 MiB (e.g. 1G)")
    return value


def check_max_pixels(value) -> int | None:
    """The pixel limit of decoding: None (OpenCV's own) or a whole number >= 1."""
    if value is None:
        return None
    if _whole("max_pixels", value) < 1:
        raise LpipsError(f"max_pixels={value}: give a positive number of pixels, or None for no limit")
    return value


def check_tile(value) -> str | int:
    """"auto" (tile above the memory budget), "off", or the side in pixels (>= MIN_TILE) of square tiles."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TILE_MODES:
            return text
        if not text.isdigit():
            raise LpipsError(f"tile '{value}': use auto, off, or a tile side in pixels (e.g. 1024)")
        value = int(text)
    if _whole("tile", value) < MIN_TILE:
        raise LpipsError(f"tile={value}: a tile side is at least {MIN_TILE} pixels")
    return value


def parse_size(text: str, name: str, *, pixels: bool = False) -> int:
    """"1G", "512M", "100000" -> a whole number. Memory suffixes are binary (1K = 1024 bytes); pixel counts
    (``pixels=True``) are decimal (100M = 100,000,000 pixels)."""
    suffixes = _PIXEL_SUFFIXES if pixels else _SUFFIXES
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]?)(?:i?b)?\s*", text.lower())
    if not match or match[2] not in suffixes:
        unit = "e.g. 100M (pixels)" if pixels else "e.g. 1G, 512M (bytes)"
        raise LpipsError(f"{name} '{text}': give a number with an optional K/M/G suffix, {unit}")
    return int(float(match[1]) * suffixes[match[2]])


def format_size(value: int, *, pixels: bool = False) -> str:
    """The shortest text ``parse_size`` reads back as ``value``: 1 << 30 -> "1G", 50_000_000 (pixels) -> "50M"."""
    suffixes = _PIXEL_SUFFIXES if pixels else _SUFFIXES
    for suffix, scale in sorted(suffixes.items(), key=lambda item: -item[1]):
        if value >= scale and value % scale == 0:
            return f"{value // scale}{suffix.upper()}"
    return str(value)
