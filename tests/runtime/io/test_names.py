"""File names of any bytes in CSV and JSON: exact bytes in CSV, readable text plus ``<key>_b64`` in JSON,
both read back to the very same bytes (by Python's own csv/json/base64 modules, as users would). A lone
carriage return in a name is quoted (Python's csv writer alone leaves it bare, and readers split there)."""
from __future__ import annotations

import base64
import csv
import io
import json
import os

import pytest

from lpips_runtime.io.names import B64_SUFFIX, exact_bytes, json_fields, json_text
from lpips_runtime.records.results import csv_line
from odd_names import NAMES  # names a POSIX folder can hold that naive text outputs break on


@pytest.mark.parametrize("raw", NAMES)
def test_csv_keeps_the_exact_bytes(raw):
    name = os.fsdecode(raw)  # what os.listdir / argv give Python
    out = io.BytesIO(exact_bytes(csv_line([name, "0.5"])))
    assert raw.replace(b'"', b'""') in out.getvalue()  # the name's own bytes (CSV doubles its quotes)
    back = io.TextIOWrapper(io.BytesIO(out.getvalue()), encoding="utf-8", errors="surrogateescape", newline="")
    assert os.fsencode(next(csv.reader(back))[0]) == raw


@pytest.mark.parametrize("raw", NAMES)
def test_json_is_valid_unicode_and_exact_through_b64(raw):
    name = os.fsdecode(raw)
    record = json_fields({"img0": name, "distance": 0.5, "error": None})
    line = json.dumps(record, ensure_ascii=False)
    line.encode("utf-8")  # strict: valid UTF-8 for any JSON reader
    back = json.loads(line)
    assert os.fsencode(json_text(back, "img0")) == raw
    if not any(0xDC80 <= ord(c) <= 0xDCFF for c in name):  # a UTF-8 name is plain text, no extra key
        assert back == {"img0": name, "distance": 0.5, "error": None}
    else:
        assert list(back) == ["img0", "img0" + B64_SUFFIX, "distance", "error"]
        assert base64.b64decode(back["img0_b64"]) == raw and "\ufffd" in back["img0"]


def test_json_text_refuses_a_bad_b64():
    with pytest.raises(ValueError, match="img0_b64 is not base64"):
        json_text({"img0": "x", "img0_b64": "not base64!"}, "img0")
    assert json_text({"img0": None}, "img0") is None
