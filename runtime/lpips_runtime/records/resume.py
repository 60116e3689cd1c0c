"""Reading a results file back to resume it, without being fooled.

A file is resumed only if it is one this kind of writer wrote: a CSV whose header is exactly the columns,
or JSON lines each an object with exactly the columns (plus ``<column>_b64`` for names that are not UTF-8,
see ``names``). Every damaged row (a field count, a number that is not one, a line that is not a JSON
object, bytes that are not text) is an ``InputError`` naming the file and the line: nothing is skipped,
because a damaged row cannot say which pair it was, and the file is left as it was.

The one thing dropped is an incomplete last row, what a kill, a full disk or a crash leaves (the writer
writes each row in one go, ending in a newline): bytes after the last newline, a last CSV record whose
quoted name is cut short, or zero bytes a crash left at the end. ``StoredRows.end`` is where the
complete rows end; the writer truncates there after every row has been read and checked.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from ..errors import InputError
from ..io.names import B64_SUFFIX, json_text

_FIX = "not a row this command wrote; repair or delete that line, or start again with --overwrite"
_CHUNK = 1 << 16


def _end_of_last_line(f: BinaryIO, size: int) -> int:
    """The offset just past the last newline of the file's first ``size`` bytes (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _CHUNK)
        f.seek(start)
        block = f.read(pos - start)
        found = block.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _number(value, column: str, csv_text: bool, infinite_ok: bool = False):
    """A finite number (float) from a CSV cell or a JSON value, or +-inf where ``infinite_ok``; '' or null
    is None."""
    if value is None or (csv_text and value == ""):
        return None
    if csv_text:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{column} {value!r} is not a number") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"{column} {json.dumps(value) if not isinstance(value, str) else repr(value)} "
                         "is not a number")
    if math.isnan(number) or (math.isinf(number) and not infinite_ok):
        raise ValueError(f"{column} {value!r} is not a finite number")
    return number


class StoredRows:
    """The rows of the results file open as ``f`` (binary, readable), in order, as ``(line, row)``:
    ``row`` maps each column to its text (CSV: '' when empty; JSON: the value, names exact) and each of
    ``number_columns`` to a float or None (finite, or also infinite in ``infinite_columns``). Iterate once;
    afterwards ``end`` is where the complete rows end (the file's size unless an incomplete last row is to
    be dropped)."""

    def __init__(self, f: BinaryIO, path: str | os.PathLike, fmt: str, columns: Sequence[str],
                 number_columns: Sequence[str] = (), infinite_columns: Sequence[str] = ()):
        self.f, self.path, self.fmt = f, os.fspath(path), fmt
        self.columns, self.number_columns = tuple(columns), tuple(c for c in number_columns if c in columns)
        self.infinite_columns = frozenset(infinite_columns)
        self.size = os.fstat(f.fileno()).st_size
        self.end = _end_of_last_line(f, self.size)
        self.header_seen = fmt != "csv"  # CSV: set once the header has been read
        self._check_tail()

    def _error(self, line: int, problem: str, fix: str = _FIX) -> InputError:
        return InputError(f"{self.path} line {line}: {problem}: {fix}")

    def _check_tail(self) -> None:
        """The bytes after the last newline must be what an interrupted write leaves: a beginning of a
        row (of the header, in a CSV without a complete line), or zeros."""
        if self.end == self.size:
            return
        self.f.seek(self.end)
        tail = self.f.read(min(self.size - self.end, _CHUNK))
        if not tail.strip(b"\0"):
            return
        if self.fmt == "jsonl":  # every row begins {"<first column>": ...
            start = json.dumps({self.columns[0]: None})[:-5].encode()
            ours = start.startswith(tail) or tail.startswith(start)
        else:  # after a complete line the header is checked with the rows; before, the tail must begin it
            ours = self.end > 0 or (",".join(self.columns) + "\n").encode().startswith(tail)
        if not ours:
            line = sum(1 for _ in self._lines()) + 1
            raise self._error(line, "an unfinished last line that does not begin like a row of this command",
                              "resume a results file this command wrote, or write a new one")

    def _lines(self) -> Iterator[tuple[int, int, bytes]]:
        """(line number, offset, bytes with the newline) of each complete line."""
        self.f.seek(0)
        offset, number = 0, 0
        for raw in self.f:
            if offset >= self.end:
                return
            number += 1
            yield number, offset, raw
            offset += len(raw)

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        return self._csv_rows() if self.fmt == "csv" else self._json_rows()

    # -- CSV -----------------------------------------------------------------------------------------

    def _csv_rows(self) -> Iterator[tuple[int, dict]]:
        last_line = [0]  # the number of the line the csv reader took last

        def text_lines():
            for number, _, raw in self._lines():
                last_line[0] = number
                yield raw.decode("utf-8", "surrogateescape")

        reader = csv.reader(text_lines(), strict=True)
        header = None
        while True:
            start_line = last_line[0] + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if str(exc) == "unexpected end of data":  # a quoted name cut short by a kill: incomplete
                    self.end = self._offset_of_line(start_line)
                    return
                raise self._error(start_line, f"not CSV ({exc})") from None
            if not record:
                continue
            if header is None:
                header = record
                if tuple(record) != self.columns:
                    raise InputError(f"{self.path} has the columns {','.join(record)}, not {','.join(self.columns)}: "
                                     "resume a results file this command wrote, or write a new one")
                self.header_seen = True
                continue
            if len(record) != len(self.columns):
                raise self._error(start_line, f"{len(record)} field(s), not the {len(self.columns)} of "
                                              f"{','.join(self.columns)}")
            row = dict(zip(self.columns, record))
            for column in self.number_columns:
                try:
                    row[column] = _number(row[column], column, csv_text=True,
                                          infinite_ok=column in self.infinite_columns)
                except ValueError as exc:
                    raise self._error(start_line, str(exc)) from None
            yield start_line, row

    def _offset_of_line(self, line: int) -> int:
        for number, offset, _ in self._lines():
            if number == line:
                return offset
        return self.end

    # -- JSON lines ----------------------------------------------------------------------------------

    def _json_rows(self) -> Iterator[tuple[int, dict]]:
        allowed = set(self.columns) | {c + B64_SUFFIX for c in self.columns}
        for number, _, raw in self._lines():
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self._error(number, "not UTF-8 text") from None
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise self._error(number, f"not a JSON object ({exc.msg})") from None
            if not isinstance(record, dict):
                kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(record), "number")
                raise self._error(number, f"a JSON {kind}, not an object")
            missing = [c for c in self.columns if c not in record]
            if missing:
                raise self._error(number, f"lacks {', '.join(missing)}")
            extra = [k for k in record if k not in allowed]
            if extra:
                raise self._error(number, f"has {', '.join(extra)}, which this command does not write")
            row = {}
            try:
                for column in self.columns:
                    value = json_text(record, column)
                    if column in self.number_columns:
                        value = _number(value, column, csv_text=False,
                                        infinite_ok=column in self.infinite_columns)
                    elif isinstance(value, (dict, list)):
                        raise ValueError(f"{column} is a JSON {'object' if isinstance(value, dict) else 'array'}")
                    row[column] = value
            except ValueError as exc:
                raise self._error(number, str(exc)) from None
            yield number, row
