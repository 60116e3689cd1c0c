"""Enumerate the image pairs of a batch run: two folders by name, all pairs of one folder, or a CSV."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from .errors import InputError

# Extensions OpenCV decodes; other files in a folder (notes, sidecars) are not images to score.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm",
                            ".pgm", ".pbm", ".pnm", ".pfm", ".jp2", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif"})
_HEADER_WORDS = {"img0", "img1", "image0", "image1", "path0", "path1", "p0", "p1", "ref", "dist",
                 "reference", "distorted", "a", "b"}


@dataclass
class FolderPairing:
    """Pairs of same-named images in two folders, and the names found on one side only."""

    pairs: list[tuple[Path, Path]]
    only0: list[str] = field(default_factory=list)
    only1: list[str] = field(default_factory=list)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` (hidden files excluded), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def pair_folders(dir0: str | Path, dir1: str | Path) -> FolderPairing:
    """Pair files of identical name in ``dir0`` and ``dir1``, sorted by name."""
    names0 = {p.name for p in list_images(dir0)}
    names1 = {p.name for p in list_images(dir1)}
    both = sorted(names0 & names1)
    return FolderPairing([(Path(dir0) / n, Path(dir1) / n) for n in both],
                         sorted(names0 - names1), sorted(names1 - names0))


def folder_pairs(folder: str | Path, consecutive: bool = False) -> list[tuple[Path, Path]]:
    """Every pair i<j of the folder's images (sorted by name), or only consecutive ones (i, i+1)."""
    images = list_images(folder)
    if consecutive:
        return list(zip(images, images[1:]))
    return list(combinations(images, 2))


def is_header_row(cells: list[str]) -> bool:
    """Whether the first row of a pair list names its columns (``img0,img1``, ``ref,dist``...) rather
    than holding two paths."""
    return len(cells) >= 2 and {c.strip().lower() for c in cells[:2]} <= _HEADER_WORDS


def read_pairs_csv(path: str | Path) -> list[tuple[Path, Path]]:
    """Pairs from a CSV of two path columns (an optional header row such as ``img0,img1`` is skipped).

    Relative paths are taken relative to the CSV file's folder, so a list travels with its images.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    pairs = []
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if line_no == 1 and is_header_row(cells):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise InputError(f"{path} line {line_no}: expected two paths separated by a comma")
        pairs.append((path.parent / cells[0], path.parent / cells[1]))
    return pairs
