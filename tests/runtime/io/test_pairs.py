"""Pair enumeration: relative paths as keys (--recursive), files skipped for their type, CSV headers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lpips_runtime.errors import InputError
from lpips_runtime.io.pairs import folder_pairs, pair_folders, read_pair_list, scan_folder


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_recursive_pairs_by_relative_path(tmp_path):
    d0, d1 = tmp_path / "gt", tmp_path / "pred"
    _touch(d0, "a.png", "sub/b.PNG", "sub/deeper/c.jpg", "only0.png", "notes.txt", ".hidden.png", ".git/x.png")
    _touch(d1, "a.png", "sub/b.PNG", "sub/deeper/c.jpg", "sub/only1.png", "sub/readme.md", "b.PNG")
    flat = pair_folders(d0, d1)
    assert [p[0].name for p in flat.pairs] == ["a.png"]
    assert flat.skipped0 == ["notes.txt"] and flat.skipped1 == []  # subfolders are not looked into
    deep = pair_folders(d0, d1, recursive=True)
    assert [(p[0].relative_to(d0).as_posix(), p[1].relative_to(d1).as_posix()) for p in deep.pairs] == [
        ("a.png", "a.png"), ("sub/b.PNG", "sub/b.PNG"), ("sub/deeper/c.jpg", "sub/deeper/c.jpg")]
    assert deep.only0 == ["only0.png"] and deep.only1 == ["b.PNG", "sub/only1.png"]
    assert deep.skipped0 == ["notes.txt"] and deep.skipped1 == ["sub/readme.md"]  # hidden ones ignored
    assert len(folder_pairs(d0, recursive=True)) == 6  # 4 images -> 6 pairs i<j


def test_scan_of_a_file_is_an_error(tmp_path):
    _touch(tmp_path, "a.png")
    with pytest.raises(InputError, match="not a folder"):
        scan_folder(tmp_path / "a.png")


@pytest.mark.parametrize("first_row,is_header", [
    ("img0,img1", True),
    ("reference,distorted", True),  # any header, not a known word list
    ("Original Image;Processed", True),
    ("a.png,b.png", False),  # names an image type: data even if the files are missing
    ("plain,other", False),  # no extension, but the files exist
])
def test_header_detection(tmp_path, first_row, is_header):
    _touch(tmp_path, "plain", "other", "x.png", "y.png")
    listing_file = tmp_path / "pairs.csv"
    listing_file.write_text(f"{first_row}\nx.png,y.png\n")
    listing = read_pair_list(listing_file)
    assert (listing.header is not None) == is_header
    assert len(listing.pairs) == (1 if is_header else 2)
    assert listing.pairs[-1] == (tmp_path / "x.png", tmp_path / "y.png")  # relative to the CSV's folder


def test_header_forced(tmp_path):
    listing_file = tmp_path / "pairs.csv"
    listing_file.write_text("ref,dist\nx.png,y.png\n")
    assert len(read_pair_list(listing_file, header=False).pairs) == 2
    listing_file.write_text("x.png,y.png\nx.png,z.png\n")
    assert read_pair_list(listing_file, header=True).pairs == [(tmp_path / "x.png", tmp_path / "z.png")]


def test_names_of_any_bytes_and_line_numbers(tmp_path):
    """A list naming files that are not UTF-8, with quoted commas and line breaks and a Unicode line
    separator (split by str.splitlines at main 7071800: a pair cut in two), reads back the exact names;
    an error names the line where its record starts."""
    listing_file = tmp_path / "pairs.csv"
    listing_file.write_bytes(b'img0,img1\nlat\xe9.png,"a,b\nc.png"\nsep\xe2\x80\xa8x.png,y.png\n')
    pairs = read_pair_list(listing_file).pairs
    assert [(os.fsencode(a.name), os.fsencode(b.name)) for a, b in pairs] == [
        (b"lat\xe9.png", b"a,b\nc.png"), ("sep\u2028x.png".encode(), b"y.png")]
    listing_file.write_bytes(b'a.png,"b\nc.png"\nonly-one.png\n')
    with pytest.raises(InputError, match="pairs.csv line 3: expected two paths"):
        read_pair_list(listing_file)
