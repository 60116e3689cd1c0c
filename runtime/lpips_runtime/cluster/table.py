"""Pair tables for cluster runs: a Ray Dataset of ``img0, img1`` strings (paths or URIs), read from a
CSV or Parquet file (local or any pyarrow filesystem URI) or taken from a Dataset.

Column choice: ``columns=(a, b)`` if given, else ``img0``/``img1`` when present, else the first two
columns. Relative paths are taken relative to the table's folder, as ``lpips-score --pairs`` does.
A CSV's first row is a header when ``csv_header`` says so, or (None) unless one of its two cells names
an image type or, for a local file, an existing file (``pairs.read_pair_list``'s rule).
"""
from __future__ import annotations

import csv
import io
import logging

from ..errors import InputError, first_line
from . import uris
from .session import require_ray

PAIR_COLUMNS = ("img0", "img1")
_PEEK_BYTES = 1 << 16
log = logging.getLogger("lpips_runtime")


def table_format(location: str) -> str:
    """"parquet" or "csv", from the name (a folder of Parquet files counts as Parquet)."""
    name = location.split("?", 1)[0].rstrip("/").lower()
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")) or "." not in name.rsplit("/", 1)[-1]:
        return "parquet"
    raise InputError(f"{location}: a pair table is a .csv or .parquet file (or a folder of Parquet files)")


def pair_columns(names: list[str], columns: tuple[str, str] | None, where: str) -> tuple[str, str]:
    """Which two columns hold the pairs (see the module docstring)."""
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(f"{where}: no column {missing[0]!r} (columns: {', '.join(names)})")
        return columns[0], columns[1]
    if all(c in names for c in PAIR_COLUMNS):
        return PAIR_COLUMNS
    if len(names) < 2:
        raise InputError(f"{where}: a pair table needs two columns of paths, found {len(names)}")
    return names[0], names[1]


def read_pair_table(source, columns: tuple[str, str] | None = None, csv_header: bool | None = None):
    """A Dataset with exactly the string columns ``img0, img1`` (see the module docstring) from a
    CSV/Parquet location, a Ray Dataset, or a list of (img0, img1) pairs (kept as given).

    Local files are read on the driver (a cluster's other nodes may not see them); URIs are read by
    Ray Data's streaming readers on the cluster.
    """
    ray = require_ray()
    if isinstance(source, ray.data.Dataset):
        return _select(source, columns, "the dataset", base="")
    if isinstance(source, list):
        import pyarrow as pa

        return ray.data.from_arrow(pa.table({"img0": [str(a) for a, _ in source],
                                             "img1": [str(b) for _, b in source]}))
    location = str(source)
    fmt = table_format(location)
    if uris.is_local(location):
        return ray.data.from_arrow(_read_local(uris.local_path(location), fmt, columns, csv_header))
    if fmt == "parquet":
        return _select(ray.data.read_parquet(location), columns, location, base=uris.parent(location))
    return _read_remote_csv(location, columns, csv_header)


def _read_local(path: str, fmt: str, columns, csv_header: bool | None):
    import pyarrow as pa

    if fmt == "csv":
        if columns is not None:
            raise InputError("columns=... is for Parquet tables and datasets; a CSV's first two columns are the pair")
        from ..io.pairs import read_pair_list

        listing = read_pair_list(path, csv_header)
        if listing.header is not None and csv_header is None:
            log.warning("first row of %s taken as a header: %s (--no-header scores it)", path, ",".join(listing.header))
        return pa.table({"img0": [str(a) for a, _ in listing.pairs], "img1": [str(b) for _, b in listing.pairs]})
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as exc:
        raise InputError(f"{path}: cannot read as Parquet ({first_line(exc)})") from None
    a, b = pair_columns(table.column_names, columns, path)
    base = uris.parent(path)
    return pa.table({new: [uris.join(base, str(v).strip()) for v in table.column(old).to_pylist()]
                     for new, old in (("img0", a), ("img1", b))})


def _read_remote_csv(location: str, columns, csv_header: bool | None):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ray = require_ray()
    if columns is not None:
        raise InputError("columns=... is for Parquet tables and datasets; a CSV's first two columns are the pair")
    fs, path = uris.filesystem(location)
    try:
        with fs.open_input_stream(path) as stream:
            head = stream.read(_PEEK_BYTES).decode("utf-8-sig", errors="replace")
    except FileNotFoundError:
        raise InputError(f"{location}: no such file") from None
    first = next((row for row in csv.reader(io.StringIO(head)) if any(c.strip() for c in row)), None)
    if first is None or len(first) < 2:
        raise InputError(f"{location}: expected two paths separated by a comma on the first line")
    from ..io.pairs import is_image_name

    header = csv_header if csv_header is not None else not any(is_image_name(c.strip()) for c in first[:2])
    names = [f"c{i}" for i in range(len(first))]
    ds = ray.data.read_csv(location, read_options=pacsv.ReadOptions(column_names=names, skip_rows=int(header)),
                           convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                                include_columns=names[:2]))
    return _select(ds, ("c0", "c1"), location, base=uris.parent(location))


def _select(ds, columns, where: str, base: str):
    a, b = pair_columns(list(ds.schema().names), columns, where)
    return ds.map_batches(_resolve_batch, fn_kwargs={"a": a, "b": b, "base": base}, batch_format="pyarrow",
                          batch_size=None)


def _resolve_batch(table, a: str, b: str, base: str):
    """Rows -> ``img0, img1`` strings, relative cells joined to ``base``."""
    import pyarrow as pa

    def column(name):
        return [uris.join(base, str(v).strip()) if v is not None else "" for v in table.column(name).to_pylist()]

    return pa.table({"img0": column(a), "img1": column(b)})
