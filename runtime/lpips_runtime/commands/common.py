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

from ..backends import default_backend
from ..core.device import AUTO, choose_device
from ..errors import LpipsError, OutputError
from ..model.nets import NET_NAMES
from ..core.options import DEFAULTS, MODEL_OPTIONS, SAME, ScorerOptions, option_info
from ..model.pixel_metrics import parse_metrics
from ..version import DIST_NAME, package_version

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class _Setting(click.ParamType):
    """A click type over a declared option's parser (``OptionInfo.parse``): a bad value is a usage error (exit 2)."""

    def __init__(self, name: str, parse):
        self.name, self._parse = name, parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except LpipsError as exc:
            self.fail(str(exc), param, ctx)


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
    from ..stdio import best_effort_stderr, reserve_closed_std_fds

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


_MODEL_CHOICE = (  # the command lines' two spellings of the ``model`` option
    click.option("--net", type=click.Choice(NET_NAMES), default=DEFAULTS.model, show_default=True),
    click.option("--model", type=click.Path(dir_okay=False), help="An exported .onnx (overrides --net/--version)."),
)


def scorer_option(name: str, **overrides):
    """Decorate a click command with Scorer option ``name`` as ``options.ScorerOptions`` declares it
    (flag, type, range, default, help); ``overrides``: click keywords where a command differs (its
    default or help). The value reaches the command under ``OptionInfo.dest`` or the flag's name."""
    info = option_info(name)
    default = getattr(DEFAULTS, name) if info.cli_default is SAME else info.cli_default
    settings: dict = {"help": info.help or None}
    if info.negated or isinstance(default, bool):
        settings["is_flag"] = True
    else:
        if info.choices:
            settings["type"] = click.Choice(info.choices)
        elif info.parse is not None:
            settings["type"] = _Setting((info.metavar or name).lower(), info.parse)
        elif info.minimum is not None:
            settings["type"] = click.IntRange(min=info.minimum)
        elif info.folder:
            settings["type"] = click.Path(file_okay=False)
        settings["default"] = info.shown or default
        settings["show_default"] = default not in (None, "")
        if info.metavar:
            settings["metavar"] = info.metavar
    settings.update(overrides)
    return click.option(info.flag, *((info.dest,) if info.dest else ()), **settings)


def model_options(command):
    """Decorate a click command with the options that choose the model and where it runs
    (``options.MODEL_OPTIONS``, ``model`` as --net/--model); ``ScorerOptions.from_cli`` reads their values."""
    for option in reversed((*_MODEL_CHOICE, *(scorer_option(name) for name in MODEL_OPTIONS[1:]))):
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
    from ..io.heatmap import COLORMAPS, DEFAULT_ALPHA, DEFAULT_SCALE

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
    further option values in ``settings`` (batch_size, workers, resize, ...; ``ScorerOptions.from_cli``).
    No --backend: the default for the precision, said on stderr where it is not ort. ``quiet``: do not
    say on stderr which device ``--device auto`` chose. ``auto_export``: False for front ends that never
    export on demand (servers, lpips-video: a missing model is an error naming the export command);
    None: on demand unless --no-export."""
    backend = options["backend"]
    if backend is None:
        backend = default_backend(options["precision"])
        if backend != "ort":
            logging.getLogger("lpips_runtime").warning("--precision %s runs on the %s backend: using --backend %s",
                                                       options["precision"], backend, backend)
    device = resolve_device(options["device"], backend, quiet)
    from ..core.scorer import Scorer

    if auto_export is not None:
        settings["auto_export"] = auto_export
    return Scorer.from_options(ScorerOptions.from_cli(options, backend=backend, device=device, **settings))


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
    from ..io.names import exact_bytes
    from ..stdio import write_bytes

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
    from ..stdio import silence_stdout

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
