"""What every command line of the runtime shares: logging to stderr, ``-V/--tool-version``, the options
that choose and configure the model (one definition for ``lpips-score`` and every front end), and the
Scorer they build.

Each command stays a thin parser: it collects these options, calls ``open_scorer`` and runs inside
``errors_to_click``, which gives every front end the same exit codes for the same faults (``EXIT_*``): the
library's typed errors and the system's I/O errors (a full disk, a file where a folder is needed) are one
line on stderr with exit code 1; a reader that closed the pipe on stdout ends the run quietly with 141,
as a tool killed by SIGPIPE reads in the shell; Ctrl-C (SIGINT) is 130. Results go to stdout through
``echo_result`` (exact bytes; a closed or failing stdout is an error, never a lost result).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys

import click

from .backends import BACKENDS, PRECISIONS, default_backend
from .device import AUTO, choose_device
from .errors import LpipsError, OutputError
from .nets import DEFAULT_VERSION, NET_NAMES, VERSIONS
from .pixel_metrics import METRICS, parse_metrics
from .version import DIST_NAME, package_version

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

# Keyword names of the model options below, in the order they are declared.
MODEL_OPTION_NAMES = ("net", "lpips_version", "baseline", "model", "models_dir", "no_export", "backend", "device",
                      "precision", "threads", "metrics", "max_pixels", "tile", "max_memory")


class _Setting(click.ParamType):
    """A click type over one of ``lpips_runtime.limits``' parsers: a bad value is a usage error (exit 2)."""

    def __init__(self, name: str, parse):
        self.name, self._parse = name, parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except LpipsError as exc:
            self.fail(str(exc), param, ctx)


def _pixels(text: str):
    from .limits import check_max_pixels, parse_size

    return None if text.strip().lower() == "none" else check_max_pixels(parse_size(text, "--max-pixels", pixels=True))


def _memory(text: str) -> int:
    from .limits import check_max_memory, parse_size

    return check_max_memory(parse_size(text, "--max-memory"))


def _tile(text: str):
    from .limits import check_tile

    return check_tile(text)


def quiet_opencv() -> None:
    """OpenCV logs decoder warnings to stderr; our own one-line errors say the same, once."""
    if "OPENCV_LOG_LEVEL" in os.environ:  # the user asked for OpenCV's logs
        return
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def setup_logging(quiet: bool = False, info: bool = False) -> None:
    """Our loggers write bare messages to stderr (never stdout: it carries results only): warnings, and
    with ``info`` (unless ``quiet``) the steps too (where weights come from, export checks). Standard
    descriptors closed at start are pointed at /dev/null first (``stdio.reserve_closed_std_fds``), and
    failed writes to stderr are dropped (``stdio.best_effort_stderr``): messages never change an exit code."""
    from .stdio import best_effort_stderr, reserve_closed_std_fds

    reserve_closed_std_fds()
    best_effort_stderr()
    quiet_opencv()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("lpips_runtime", "lpips_export"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO if info and not quiet else logging.WARNING)
        logger.propagate = False


def parse_metrics_option(ctx, param, value) -> tuple[str, ...]:
    """click callback: "psnr,ssim" -> ("psnr", "ssim"); an unknown name is a usage error (exit code 2)."""
    try:
        return parse_metrics(value)
    except LpipsError as exc:
        raise click.BadParameter(str(exc)) from None


_MODEL_OPTIONS = (
    click.option("--net", type=click.Choice(NET_NAMES), default="alex", show_default=True),
    click.option("--version", "lpips_version", type=click.Choice(VERSIONS), default=DEFAULT_VERSION,
                 show_default=True),
    click.option("--baseline", is_flag=True, help="Uncalibrated baseline (no linear layers)."),
    click.option("--model", type=click.Path(dir_okay=False), help="An exported .onnx (overrides --net/--version)."),
    click.option("--models-dir", type=click.Path(file_okay=False),
                 help="Where exports are looked up and written. [default: $LPIPS_RT_MODELS, else ./models if the "
                      "working folder has one, else the user data folder (~/.local/share/lpips-rt/models)]"),
    click.option("--no-export", is_flag=True,
                 help="Never export a missing model on demand (an error names the lpips-export command instead)."),
    click.option("--backend", type=click.Choice(BACKENDS),
                 help="Default: ort; openvino with --precision bf16 (the backend that computes bf16)."),
    click.option("--device", default="cpu", show_default=True,
                 help="cpu, cuda, cuda:<index>, or auto (CUDA when usable here, else the CPU; says which)."),
    click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                 help="fp16: the mixed-precision export (float16 backbone, float32 head), for GPUs; bf16: the "
                      "fp32 export computed in bfloat16 on OpenVINO (CPUs with native bf16; faster, "
                      "distances within ~1e-3 of fp32); int8: offered only for nets whose int8 model keeps that "
                      "accuracy (none so far: docs/performance.md). fp32 reproduces published numbers."),
    click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: physical cores)."),
    click.option("--metrics", metavar="LIST", callback=parse_metrics_option, default="",
                 help=f"Also compute these, in the same pass, on the images' 8-bit values: comma-separated from "
                      f"{', '.join(METRICS)} (psnr_y/ssim_y: BT.601 luma), e.g. psnr,ssim."),
    click.option("--max-pixels", type=_Setting("pixels", _pixels), default="100M", show_default=True,
                 help="Refuse images whose header declares more pixels, before decoding (K/M/G = 10^3/6/9; "
                      "none: OpenCV's own limit, 2^30)."),
    click.option("--tile", type=_Setting("tile", _tile), default="auto", show_default=True,
                 help="auto: score a pair in tiles when it would need more than --max-memory at once (exact); "
                      "off; or a tile side in pixels."),
    click.option("--max-memory", type=_Setting("bytes", _memory), default="1G", show_default=True,
                 help="Working memory of scoring: one batch or tile, and the pairs decoded ahead (K/M/G = 2^10/20/30)."),
)


def model_options(command):
    """Decorate a click command with the options that choose the model and where it runs
    (their keyword names: ``MODEL_OPTION_NAMES``)."""
    for option in reversed(_MODEL_OPTIONS):
        command = option(command)
    return command


def resolve_device(device: str, backend: str, quiet: bool = False) -> str:
    """``device`` itself, or for "auto" the device ``choose_device`` picks, said on stderr unless ``quiet``."""
    if device != AUTO:
        return device
    choice = choose_device(backend)
    if not quiet:
        click.echo(choice.describe(), err=True)
    return choice.device


def _heatmap_max(allow_auto: bool):
    def convert(_ctx, _param, value):
        if value is None or (allow_auto and value == "auto"):
            return value
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not number > 0:
            raise click.BadParameter(f"'{value}' is " + ("neither a positive number nor 'auto'" if allow_auto
                                                           else "not a positive number"))
        return number

    return convert


def heatmap_options(allow_auto: bool):
    """Decorate a click command with the options that style a heatmap, the same in every front end:
    ``heatmap_alpha``, ``heatmap_max`` (a positive float, None for the net's fixed default scale
    ``heatmap.DEFAULT_SCALE``, or "auto" for each map's own maximum where ``allow_auto``: not for videos, whose
    colours would then flicker from frame to frame) and ``colormap``."""
    from .heatmap import COLORMAPS, DEFAULT_ALPHA, DEFAULT_SCALE

    scales = ", ".join(f"{net} {value:g}" for net, value in DEFAULT_SCALE.items())
    options = (
        click.option("--heatmap-alpha", type=click.FloatRange(0, 1), default=DEFAULT_ALPHA, show_default=True,
                     help="Opacity of the colours over the (greyed) reference where the distance is at the top of "
                          "the scale (a fifth of it where the distance is 0); 1: colours only."),
        click.option("--heatmap-max", callback=_heatmap_max(allow_auto), metavar="VALUE|auto" if allow_auto else "VALUE",
                     help=f"Map value at the top of the colour bar. [default: a fixed scale per net, the same for "
                          f"every picture: {scales}" + ("; auto: each map's own maximum]" if allow_auto else "]")),
        click.option("--colormap", type=click.Choice(sorted(COLORMAPS)), default="inferno", show_default=True),
    )

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def open_scorer(options: dict, quiet: bool = False, auto_export: bool | None = None, **settings):
    """A ``Scorer`` from the values of ``model_options`` (``options`` may hold other keys too) and
    further Scorer keywords in ``settings`` (batch_size, workers, resize, ...). ``quiet``: do not say
    on stderr which device ``--device auto`` chose. ``auto_export``: False for front ends that never
    export on demand (servers, lpips-video: a missing model is an error naming the export command);
    None: on demand unless --no-export."""
    from .scorer import Scorer

    backend = options["backend"]
    if backend is None:
        backend = default_backend(options["precision"])
        if backend != "ort":
            logging.getLogger("lpips_runtime").warning("--precision %s runs on the %s backend: using --backend %s",
                                                       options["precision"], backend, backend)
    device = resolve_device(options["device"], backend, quiet)
    return Scorer(options["model"] or options["net"], version=options["lpips_version"], baseline=options["baseline"],
                  backend=backend, device=device, precision=options["precision"],
                  threads=options["threads"], models_dir=options["models_dir"],
                  auto_export=not options["no_export"] if auto_export is None else auto_export,
                  metrics=options["metrics"], max_pixels=options["max_pixels"], tile=options["tile"],
                  max_memory=options["max_memory"], **settings)


def _print_tool_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"{DIST_NAME} {package_version()}")
    ctx.exit()


def tool_version_option(command):
    """``-V/--tool-version``: print ``lpips-rt <version>`` and exit (``--version`` is the LPIPS version,
    as in the official scripts)."""
    return click.option("-V", "--tool-version", is_flag=True, expose_value=False, is_eager=True,
                        callback=_print_tool_version, help="Print the lpips-rt version and exit.")(command)


def require_stdout(purpose: str) -> None:
    """Fail now, before any work, when standard output was closed at start (``>&-``): ``purpose`` says
    what it was needed for ("print the distance")."""
    if sys.stdout is None:
        raise OutputError(f"standard output is closed: nowhere to {purpose}", errno.EBADF, stream=True)


def echo_result(text: str) -> None:
    """Print one result line on stdout, its exact bytes (names that are not UTF-8 included). A closed or
    failing stdout is an ``OutputError``: a result is never lost silently."""
    from .names import exact_bytes
    from .stdio import write_bytes

    require_stdout("print the result")
    try:
        write_bytes(sys.stdout, exact_bytes(text + "\n"))
    except OSError as exc:
        raise OutputError(f"standard output: cannot write ({exc.strerror or exc})", exc.errno, stream=True) from None


def _os_error_text(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


@contextlib.contextmanager
def errors_to_click():
    """Turn failures into the exit codes above: the library's typed errors and I/O errors into click's
    one-line error (exit code 1, no traceback), a closed pipe on stdout into a quiet exit 141, Ctrl-C
    into exit 130 with "interrupted" on stderr."""
    from .stdio import silence_stdout

    try:
        yield
    except OutputError as exc:
        if exc.stream:
            silence_stdout()
        if exc.errno == errno.EPIPE:
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        raise click.ClickException(str(exc)) from None
    except LpipsError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # a pipe closed under a write that did not go through echo_result
        silence_stdout()
        raise SystemExit(EXIT_BROKEN_PIPE) from None
    except OSError as exc:  # the system refused (a full disk, a folder that is a file): not our bug
        raise click.ClickException(_os_error_text(exc)) from None
