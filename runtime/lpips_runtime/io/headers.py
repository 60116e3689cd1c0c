"""What an encoded image is and how large it says it is, from its first bytes: nothing is decoded.

OpenCV picks its decoder by the file's signature and offers no header-only read (OpenCV 5.0 included:
its own pixel cap, 2^30, is process-wide and fixed at first use). Pillow's format plugins parse just the
header when opening lazily, for every 8/16-bit format OpenCV decodes except PAM (measured:
benchmarks/README.md, "Limits"). So the signature chooses ONE Pillow plugin, the one for the format
OpenCV will pick, and that plugin reads the size; a file that two parsers would read differently
(a polyglot) is sized by the parser that matches OpenCV's choice.

Float formats (PFM, Radiance HDR, OpenEXR) are recognised here too: they are refused before decoding,
since LPIPS takes 8/16-bit images only.
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFormat:
    name: str  # for messages
    pillow: str | None  # the Pillow plugin that reads its header; None: no header reader
    floating: bool = False  # samples are floats: not an LPIPS input


def _is_webp(data: bytes) -> bool:
    return data[8:12] == b"WEBP"


def _is_avif(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis")


# (signature, extra check or None, format), in the order OpenCV's decoders test theirs.
_SIGNATURES = (
    (b"BM", None, ImageFormat("BMP", "BMP")),
    (b"#?RADIANCE", None, ImageFormat("Radiance HDR", None, floating=True)),
    (b"#?RGBE", None, ImageFormat("Radiance HDR", None, floating=True)),
    (b"\xff\xd8\xff", None, ImageFormat("JPEG", "JPEG")),
    (b"RIFF", _is_webp, ImageFormat("WebP", "WEBP")),
    (b"\x59\xa6\x6a\x95", None, ImageFormat("Sun raster", "SUN")),
    *((f"P{k}".encode(), None, ImageFormat("PNM", "PPM")) for k in range(1, 7)),
    (b"P7", None, ImageFormat("PAM", None)),
    (b"PF", None, ImageFormat("PFM", None, floating=True)),
    (b"Pf", None, ImageFormat("PFM", None, floating=True)),
    (b"II*\x00", None, ImageFormat("TIFF", "TIFF")),
    (b"MM\x00*", None, ImageFormat("TIFF", "TIFF")),
    (b"II+\x00", None, ImageFormat("TIFF", "TIFF")),
    (b"MM\x00+", None, ImageFormat("TIFF", "TIFF")),
    (b"\x89PNG", None, ImageFormat("PNG", "PNG")),  # a damaged signature still reads as a damaged PNG
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", None, ImageFormat("JPEG 2000", "JPEG2000")),
    (b"\xff\x4f\xff\x51", None, ImageFormat("JPEG 2000", "JPEG2000")),
    (b"v/1\x01", None, ImageFormat("OpenEXR", None, floating=True)),
    (b"GIF87a", None, ImageFormat("GIF", "GIF")),
    (b"GIF89a", None, ImageFormat("GIF", "GIF")),
    (b"\x00\x00\x00", _is_avif, ImageFormat("AVIF", "AVIF")),
)

# Formats whose size is checked before decoding (for messages).
SIZED_FORMATS = ", ".join(dict.fromkeys(f.name for _, _, f in _SIGNATURES if f.pillow))


def sniff(data: bytes) -> ImageFormat | None:
    """The format OpenCV would decode ``data`` as, by its signature; None for none we know."""
    for magic, check, fmt in _SIGNATURES:
        if data.startswith(magic) and (check is None or check(data)):
            return fmt
    return None


_pillow_ready = threading.Lock()
_pillow_loaded = False


def _pillow_plugins():
    """Pillow's registry of format openers, with every plugin registered (once, under a lock: registering
    mutates the registry that concurrent lookups read)."""
    global _pillow_loaded
    from PIL import Image

    if not _pillow_loaded:
        with _pillow_ready:
            Image.init()
            _pillow_loaded = True
    return Image.OPEN


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the header of encoded image ``data``, without decoding pixels;
    None when the format is unknown, has no header reader, or the header does not parse.

    Calls the one Pillow plugin for the format OpenCV will use (see the module docstring), not
    ``PIL.Image.open``: that also applies Pillow's own decompression-bomb limit, which raises without
    the size above 2 x ``Image.MAX_IMAGE_PIXELS`` and warns through the process-wide warnings filter
    below it, while the limit here is the caller's.
    """
    fmt = sniff(data)
    if fmt is None or fmt.pillow is None:
        return None
    opener = _pillow_plugins().get(fmt.pillow)
    if opener is None:  # a Pillow built without this format (e.g. no AVIF)
        return None
    try:
        image = opener[0](io.BytesIO(data), "")
        width, height = image.size
    except Exception:  # noqa: BLE001 - any parse failure of a hostile header means "size unknown"
        return None
    return int(width), int(height)
