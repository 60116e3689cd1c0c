"""File names of any bytes in text outputs: CSV rows, JSON lines, JSON objects.

On POSIX a file name is bytes. Python hands names over as str, each byte that is not part of valid UTF-8
turned into a lone surrogate U+DC80..U+DCFF (PEP 383, ``os.fsdecode``); ``os.fsencode`` gives the
bytes back. The conventions:

* CSV and other byte streams: the exact bytes. A row is UTF-8 text in which a name's non-UTF-8 bytes
  stand as they are (only rows naming such files hold any). Python reads them back with
  ``open(path, encoding="utf-8", errors="surrogateescape", newline="")``, pandas with
  ``encoding_errors="surrogateescape"``; byte-oriented Unix tools (grep, cut, awk, xargs) see the name.
* JSON, which must be valid Unicode: a text value holding such bytes is written as a readable
  approximation (each undecodable byte as U+FFFD) and, under ``<key>_b64``, its exact bytes in base64;
  readers take ``<key>_b64`` when it is there (``json_text``). Values that are valid UTF-8 are plain
  strings with no extra key. This is borg 2's convention for paths in its JSON output.
"""
from __future__ import annotations

import base64
import binascii

B64_SUFFIX = "_b64"


def exact_bytes(text: str) -> bytes:
    """``text`` as UTF-8, its escaped bytes (``os.fsdecode``'s surrogates) restored as they were.
    A lone surrogate that stands for no byte (only a caller's own string can hold one) becomes '?'."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_fields(record: dict) -> dict:
    """``record`` ready for ``json.dumps``: each str value that is not valid Unicode becomes its
    approximation, followed by ``<key>_b64`` (its exact bytes, base64)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, str) and not _is_unicode(value):
            raw = exact_bytes(value)
            out[key] = raw.decode("utf-8", "replace")
            out[key + B64_SUFFIX] = base64.b64encode(raw).decode("ascii")
        else:
            out[key] = value
    return out


def json_text(record: dict, key: str):
    """The exact text of ``record[key]`` (read with ``json.loads``): from ``<key>_b64`` when present, as
    ``os.fsdecode`` would give the name. A ``<key>_b64`` that is not base64 is a ``ValueError``."""
    encoded = record.get(key + B64_SUFFIX)
    if encoded is None:
        return record.get(key)
    try:
        raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None:
        raise ValueError(f"{key}{B64_SUFFIX} is not base64")
    return raw.decode("utf-8", "surrogateescape")
