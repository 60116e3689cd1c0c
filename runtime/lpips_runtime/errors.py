"""Typed errors. Every message is one line that names the fix where there is one.

CLIs turn any ``LpipsError`` into ``click.ClickException`` (one line on stderr, exit code 1).
"""


class LpipsError(Exception):
    """Base class of every error this project raises on purpose."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a library's own words, e.g. a backend's), or its type's
    name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def error_text(exc: BaseException) -> str:
    """One line for a pair's recorded error: our typed errors say it all; others get their type name."""
    if isinstance(exc, LpipsError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


class MissingExtraError(LpipsError, ImportError):
    """An optional dependency is absent; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str, purpose: str):
        self.module, self.extra = module, extra
        super().__init__(
            f"{purpose} needs the '{module}' module: pip install 'lpips-rt[{extra}]'"
        )


class WeightsError(LpipsError):
    """Weights are missing, corrupt, or do not match their pinned digest."""


class ModelFileError(LpipsError):
    """A model file is missing, unreadable, not an lpips-rt export, or fails its digest check."""


class InputError(LpipsError, ValueError):
    """An image or array cannot be scored (unreadable, wrong shape/dtype/range, too small, size mismatch)."""


class BackendError(LpipsError):
    """A backend cannot run as asked (unknown name, unavailable device, engine built elsewhere)."""


class OutputError(LpipsError):
    """Results cannot be written: a full disk, a closed pipe, standard output closed or failing.
    ``errno``: the system's error number (``errno.EPIPE`` for a reader that went away) or None;
    ``stream``: the output was standard output (a command line then stops writing there)."""

    def __init__(self, message: str, errno: int | None = None, stream: bool = False):
        super().__init__(message)
        self.errno, self.stream = errno, stream


class ClusterError(LpipsError):
    """A Ray cluster cannot be reached, or a distributed run failed as a whole (not one pair)."""


class ImageTooLargeError(InputError):
    """An image's header declares more pixels than the limit: refused before any pixel is decoded.

    ``width``, ``height``: what the header declares; ``limit``: the pixel limit it exceeds.
    """

    def __init__(self, name: str, width: int, height: int, limit: int):
        self.width, self.height, self.limit = width, height, limit
        super().__init__(f"{name}: {width}x{height} is {width * height:,} pixels, above the limit of {limit:,} "
                         "(raise it with --max-pixels / max_pixels=, or shrink the image)")
