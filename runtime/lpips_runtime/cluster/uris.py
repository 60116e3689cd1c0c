"""Image and table locations: local paths, ``file://`` and every URI pyarrow's filesystems open
(``s3://``, ``gs://``, ``hdfs://``, ``abfs://``...), read through ``pyarrow.fs``.

Local paths stay plain paths, so that the Scorer reads them itself and names them in its messages as
``lpips-score`` does; other URIs are read here into ``EncodedImage`` (the bytes and the URI they came
from). Object stores need pyarrow's credentials as usual (AWS_* variables or instance roles for S3,
GOOGLE_APPLICATION_CREDENTIALS for GCS); HDFS needs a JVM and libhdfs on every node.
"""
from __future__ import annotations

import posixpath
import re
import threading
from pathlib import Path

from ..errors import InputError, first_line
from ..io.images import EncodedImage, max_file_bytes

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_filesystems: dict[str, object] = {}
_lock = threading.Lock()


def scheme(uri: str) -> str | None:
    """The URI's scheme ("s3", "file", ...), or None for a plain path."""
    match = _SCHEME.match(uri)
    return match[1].lower() if match else None


def is_local(uri: str) -> bool:
    return scheme(uri) in (None, "file")


def local_path(uri: str) -> str:
    """A plain path for a local location (``file:///a/b`` -> ``/a/b``)."""
    return uri[len("file://"):] if scheme(uri) == "file" else uri


def parent(uri: str) -> str:
    """The folder holding ``uri`` ("" for a bare file name), in the same form as ``uri``."""
    if scheme(uri) in (None,):
        folder = str(Path(uri).parent)
        return "" if folder == "." else folder
    head, _, rest = uri.partition("://")
    return f"{head}://{posixpath.dirname(rest)}"


def join(base: str, location: str) -> str:
    """``location`` relative to the folder ``base`` (as ``lpips-score --pairs`` resolves CSV cells);
    absolute paths and URIs are kept."""
    if not base or scheme(location) or location.startswith("/"):
        return location
    if scheme(base) is None:
        return str(Path(base) / location)
    return base.rstrip("/") + "/" + location


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for a URI with a scheme. One filesystem per scheme and
    authority per process: creating an S3 one resolves its bucket's region over the network."""
    import pyarrow.fs as pafs

    head, _, rest = uri.partition("://")
    rest = rest.split("?", 1)[0]  # options (?region=...) configure the filesystem, not the path
    authority, _, inner = rest.partition("/")
    key = f"{head.lower()}://{authority}"
    with _lock:
        fs = _filesystems.get(key)
    if fs is None or head.lower() not in _PATH_RULES:
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... with long texts
            raise InputError(f"{uri}: cannot open its filesystem ({first_line(exc)})") from None
        with _lock:
            _filesystems.setdefault(key, fs)
        return fs, path
    return fs, _PATH_RULES[head.lower()](authority, inner)


# How pyarrow names a file inside the filesystem of a URI, for the schemes whose rule is plain
# (others go through FileSystem.from_uri on every call).
_PATH_RULES = {
    "s3": lambda authority, inner: f"{authority}/{inner}",
    "gs": lambda authority, inner: f"{authority}/{inner}",
    "gcs": lambda authority, inner: f"{authority}/{inner}",
    "hdfs": lambda authority, inner: f"/{inner}",
}


def read_bytes(uri: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a file at a URI with a scheme, at most ``max_bytes`` of them (None: no cap);
    ``InputError`` (one line) if it cannot be read or is larger."""
    fs, path = filesystem(uri)
    try:
        with fs.open_input_stream(path) as stream:
            data = stream.read() if max_bytes is None else stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError(f"{uri}: no such file") from None
    except Exception as exc:
        raise InputError(f"{uri}: cannot read ({first_line(exc)})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(f"{uri}: more than the {max_bytes:,} bytes allowed")
    return data


def image_source(location: str, max_pixels: int | None):
    """What to hand a Scorer with pixel limit ``max_pixels`` for one image: a local path as is (the
    Scorer bounds its reading), other URIs read here as ``EncodedImage`` under the same byte cap."""
    if is_local(location):
        return local_path(location)
    return EncodedImage(read_bytes(location, max_file_bytes(max_pixels)), location)


def list_image_files(folder: str, recursive: bool = False) -> list[str]:
    """Image files inside a folder (local or URI; ``recursive``: its subfolders too), sorted by path
    relative to it, hidden files excluded: the rule of ``lpips_runtime.io.pairs.list_images``."""
    from ..io.pairs import is_image_name, list_images

    if is_local(folder):
        return [str(p) for p in list_images(local_path(folder), recursive)]
    import pyarrow.fs as pafs

    fs, path = filesystem(folder)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
    except FileNotFoundError:
        raise InputError(f"{folder}: not a folder") from None
    except Exception as exc:
        raise InputError(f"{folder}: cannot list ({first_line(exc)})") from None
    base, root = folder.rstrip("/"), path.rstrip("/") + "/"
    names = sorted(info.path[len(root):] for info in infos if info.type == pafs.FileType.File
                   and info.path.startswith(root) and is_image_name(info.base_name)
                   and not any(part.startswith(".") for part in info.path[len(root):].split("/")))
    return [f"{base}/{name}" for name in names]
