"""Enumerate the image pairs of a batch run: two folders by relative path, all pairs of one folder,
one reference against a folder, or a CSV list."""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from ..errors import InputError
from .fileio import UnreadableFile, read_regular_file

# The file types taken as images in folders (what OpenCV decodes), matched case-insensitively. Other
# files (notes, sidecars) are not scored and are reported; hidden files and folders are ignored.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".ppm",
                            ".pgm", ".pbm", ".pnm", ".pfm", ".jp2", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif"})
MAX_LIST_BYTES = 1 << 30  # a --pairs CSV: millions of rows, not an endless stream


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


@dataclass
class FolderListing:
    """The images of a folder (sorted by path relative to it) and the other files found there."""

    folder: Path
    images: list[Path]
    skipped: list[str] = field(default_factory=list)  # relative names of files that are not images

    def relative(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()


@dataclass
class FolderPairing:
    """Pairs of images at the same relative path in two folders, and what was left out on each side."""

    pairs: list[tuple[Path, Path]]
    only0: list[str] = field(default_factory=list)
    only1: list[str] = field(default_factory=list)
    skipped0: list[str] = field(default_factory=list)
    skipped1: list[str] = field(default_factory=list)


@dataclass
class PairList:
    """The pairs of a CSV list, and its header row if one was skipped."""

    pairs: list[tuple[Path, Path]]
    header: list[str] | None = None


def scan_folder(folder: str | Path, recursive: bool = False) -> FolderListing:
    """Images directly inside ``folder`` (``recursive``: in its subfolders too, symlinked folders not
    followed), sorted by relative path; hidden files and folders are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    images, skipped = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            (images if is_image_name(name) else skipped).append(path)
    listing = FolderListing(folder, [], [])
    listing.images = sorted(images, key=listing.relative)
    listing.skipped = sorted(listing.relative(p) for p in skipped)
    return listing


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` (see ``scan_folder``), sorted by relative path."""
    return scan_folder(folder, recursive).images


def pair_folders(dir0: str | Path, dir1: str | Path, recursive: bool = False) -> FolderPairing:
    """Pair images of identical relative path in ``dir0`` and ``dir1``, sorted by that path."""
    side0, side1 = scan_folder(dir0, recursive), scan_folder(dir1, recursive)
    names0 = {side0.relative(p): p for p in side0.images}
    names1 = {side1.relative(p): p for p in side1.images}
    both = sorted(names0.keys() & names1.keys())
    return FolderPairing([(names0[n], names1[n]) for n in both], sorted(names0.keys() - names1.keys()),
                         sorted(names1.keys() - names0.keys()), side0.skipped, side1.skipped)


def folder_pairs(folder: str | Path, consecutive: bool = False, recursive: bool = False) -> list[tuple[Path, Path]]:
    """Every pair i<j of the folder's images (sorted by relative path), or only consecutive ones (i, i+1)."""
    images = list_images(folder, recursive)
    if consecutive:
        return list(zip(images, images[1:]))
    return list(combinations(images, 2))


def _looks_like_data(cells: list[str], base: Path) -> bool:
    """A first row is data when one of its two paths names an image type or an existing file."""
    return any(is_image_name(c) or (base / c).is_file() for c in cells[:2])


def _cell_path(base: Path, cell: str) -> Path:
    """The path a cell names: as written when that file exists (a name may begin or end with spaces),
    else without the spaces around it (hand-written lists: ``a.png, b.png``)."""
    stripped = cell.strip()
    if stripped != cell and (base / cell).exists():
        return base / cell
    return base / stripped


def read_pair_list(path: str | Path, header: bool | None = None) -> PairList:
    """Pairs from a CSV of two path columns (further columns are ignored).

    ``header``: True skips the first row, False scores it, None decides: the first row is a header
    unless one of its two cells names an image type (by extension) or an existing file. Relative paths
    are taken relative to the CSV file's folder, so a list travels with its images. Cells are file names
    of any bytes: UTF-8 text, other bytes kept as they are (``names``), quoted fields may hold commas and
    line breaks, so a results file of ours reads back as the same pairs.
    """
    path = Path(path)
    try:
        text = read_regular_file(path, MAX_LIST_BYTES).decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnreadableFile as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    pairs, header_row = [], None
    first = True
    reader = csv.reader(io.StringIO(text, newline=""))
    line_no = 1
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if not any(cells):
                line_no = reader.line_num + 1
                continue
            if first:
                first = False
                if header or (header is None and not _looks_like_data(cells, path.parent)):
                    header_row = cells
                    line_no = reader.line_num + 1
                    continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise InputError(f"{path} line {line_no}: expected two paths separated by a comma")
            pairs.append((_cell_path(path.parent, row[0]), _cell_path(path.parent, row[1])))
            line_no = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path} line {line_no}: not CSV ({exc})") from None
    return PairList(pairs, header_row)


def read_pairs_csv(path: str | Path, header: bool | None = None) -> list[tuple[Path, Path]]:
    """The pairs of ``read_pair_list``."""
    return read_pair_list(path, header).pairs
