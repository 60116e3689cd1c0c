"""The Scorer's options, declared once: ``ScorerOptions``.

Each field is one option: its name (the ``Scorer`` keyword), type and default, and in its metadata
(``option_info``) how a command line spells it, parses it and explains it, and its range or choices.
Everything that takes Scorer options reads them from here:

* ``Scorer(...)``'s keywords and their defaults (``Scorer.options`` is the validated ``ScorerOptions``;
  ``Scorer.from_options(options)`` opens one);
* the click options of ``lpips-score``, ``lpips-video`` and ``lpips-serve`` (``cli_common.model_options``,
  ``cli_common.scorer_option``), built from the metadata;
* the settings a Ray worker or replica opens its Scorer with (``cluster.settings.ScorerSettings`` is
  this class), and the ``args`` of a Ray Serve config file (``from_text`` parses "1G", "50M" there).

Values are checked once, in ``__post_init__`` (one-line ``LpipsError``s naming the option); a command
line's parse errors become usage errors (exit 2). Adding an option: one field here, one keyword on
``Scorer.__init__`` (a test holds the two equal), and the Scorer's use of it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import LpipsError
from ..limits import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_WORK_MEMORY,
    check_batch_size,
    check_max_memory,
    check_max_pixels,
    check_threads,
    check_tile,
    check_workers,
    format_size,
    parse_size,
)
from ..model.nets import DEFAULT_VERSION, VERSIONS
from ..model.pixel_metrics import METRICS, parse_metrics

__all__ = ["OptionInfo", "ScorerOptions", "DEFAULTS", "option_info", "MODEL_OPTIONS", "parse_pixels",
           "parse_memory"]


SAME = object()  # OptionInfo.cli_default: a command line's default is the option's own


@dataclass(frozen=True)
class OptionInfo:
    """How an option appears on command lines (``flag`` None: Python only).

    ``parse``: command-line (or config-file) text -> value, raising ``LpipsError``; ``check``: a value ->
    the value to keep (validated, normalised), raising ``LpipsError``; ``choices``/``minimum``: the
    range a command line offers; ``shown``: the default as a command line writes it ("100M");
    ``cli_default``: a command line's default where it is not the Python one (``SAME``: the option's own);
    ``negated``: the flag turns the option off (``--no-export`` sets ``auto_export=False``);
    ``dest``: the command line's parameter name where not the option's (``--version`` is ``lpips_version``:
    ``-V/--tool-version`` is the tool's)."""

    help: str = ""
    flag: str | None = None
    dest: str | None = None
    parse: Callable[[str], Any] | None = None
    check: Callable[[Any], Any] | None = None
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    metavar: str | None = None
    shown: str | None = None
    cli_default: Any = SAME
    negated: bool = False
    folder: bool = False


def _option(default, **info) -> Any:
    return field(default=default, metadata={"option": OptionInfo(**info)})


def parse_pixels(text: str) -> int | None:
    """"100M" -> 100_000_000 pixels (decimal suffixes); "none" -> None (OpenCV's own limit)."""
    return None if text.strip().lower() == "none" else check_max_pixels(parse_size(text, "--max-pixels", pixels=True))


def parse_memory(text: str) -> int:
    """"1G" -> 1 << 30 bytes (binary suffixes), at least 1 MiB."""
    return check_max_memory(parse_size(text, "--max-memory"))


def _backend_names() -> tuple[str, ...]:
    from ..backends import BACKENDS

    return BACKENDS


def _precisions() -> tuple[str, ...]:
    from ..backends import PRECISIONS

    return PRECISIONS


def _check_resize(value):
    from ..io.images import ResizePolicy

    return value if isinstance(value, ResizePolicy) else ResizePolicy.parse(value)


@dataclass(frozen=True)
class ScorerOptions:
    """The options of a ``Scorer`` (see its docstring for what each does), validated on creation.

    ``model`` is a net name or the path of an lpips-rt export. ``resize`` is kept as a
    ``images.ResizePolicy``, ``metrics`` as a tuple of names, ``tile`` as "auto", "off" or an int."""

    model: str | Path = _option("alex")  # command lines: --net NAME or --model FILE (``command_line_options``)
    version: str = _option(DEFAULT_VERSION, flag="--version", dest="lpips_version", choices=VERSIONS)
    baseline: bool = _option(False, flag="--baseline", help="Uncalibrated baseline (no linear layers).")
    backend: str = _option("ort", flag="--backend", choices="backends", cli_default=None,
                           help="Default: ort; openvino with --precision bf16 (the backend that computes bf16).")
    device: str = _option("cpu", flag="--device",
                          help="cpu, cuda, cuda:<index>, or auto (CUDA when usable here, else the CPU; says which).")
    precision: str = _option("fp32", flag="--precision", choices="precisions",
                             help="fp16: the mixed-precision export (float16 backbone, float32 head), for GPUs; bf16: "
                                  "the fp32 export computed in bfloat16 on OpenVINO (CPUs with native bf16; faster, "
                                  "distances within ~1e-3 of fp32); int8: offered only for nets whose int8 model keeps that "
                                  "accuracy (none so far: docs/performance.md). fp32 reproduces published numbers.")
    frames: str | None = _option("auto")  # Python only: lpips-video chooses it from the videos
    threads: int | None = _option(None, flag="--threads", minimum=1, check=check_threads,
                                  help="CPU threads (default: physical cores).")
    batch_size: int = _option(16, flag="--batch-size", minimum=1, check=check_batch_size)
    workers: int | None = _option(None, flag="--workers", minimum=1, check=check_workers,
                                  help="Decoding threads (default: up to 4).")
    resize: Any = _option("none", flag="--resize", check=_check_resize,
                          help="none (sizes must match), first (resize the second to the first), or WxH (both).")
    models_dir: str | Path | None = _option(
        None, flag="--models-dir", folder=True,
        help="Where exports are looked up and written. [default: $LPIPS_RT_MODELS, else ./models if the working "
             "folder has one, else the user data folder (~/.local/share/lpips-rt/models)]")
    auto_export: bool = _option(True, flag="--no-export", negated=True,
                                help="Never export a missing model on demand (an error names the lpips-export "
                                     "command instead).")
    max_pixels: int | None = _option(DEFAULT_MAX_PIXELS, flag="--max-pixels", parse=parse_pixels,
                                     check=check_max_pixels, shown=format_size(DEFAULT_MAX_PIXELS, pixels=True),
                                     metavar="PIXELS",
                                     help="Refuse images whose header declares more pixels, before decoding "
                                          "(K/M/G = 10^3/6/9; none: OpenCV's own limit, 2^30).")
    tile: str | int = _option("auto", flag="--tile", parse=check_tile, check=check_tile, metavar="TILE",
                              help="auto: score a pair in tiles when it would need more than --max-memory at once "
                                   "(exact); off; or a tile side in pixels.")
    max_memory: int = _option(DEFAULT_WORK_MEMORY, flag="--max-memory", parse=parse_memory, check=check_max_memory,
                              shown=format_size(DEFAULT_WORK_MEMORY), metavar="BYTES",
                              help="Working memory of scoring: one batch or tile, and the pairs decoded ahead "
                                   "(K/M/G = 2^10/20/30).")
    metrics: Sequence[str] = _option((), flag="--metrics", parse=parse_metrics, check=parse_metrics, metavar="LIST",
                                     cli_default="",
                                     help=f"Also compute these, in the same pass, on the images' 8-bit values: "
                                          f"comma-separated from {', '.join(METRICS)} (psnr_y/ssim_y: BT.601 luma), "
                                          f"e.g. psnr,ssim.")
    spin_between_runs: bool = _option(True)  # Python only: lpips-serve turns it off

    def __post_init__(self):
        for f in fields(self):
            check = option_info(f.name).check
            if check is not None:
                object.__setattr__(self, f.name, check(getattr(self, f.name)))
        self.resize.check_limit(self.max_pixels)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_text(cls, values: dict) -> "ScorerOptions":
        """From a mapping of option names to values where text may stand for a value as on a command line
        (a config file's "max_memory: 2G", "max_pixels: 50M"). Unknown names are an ``LpipsError``."""
        unknown = sorted(set(values) - set(OPTION_NAMES))
        if unknown:
            raise LpipsError(f"unknown Scorer option(s): {', '.join(unknown)}")
        parsed = {}
        for name, value in values.items():
            parse = option_info(name).parse
            parsed[name] = parse(value) if parse is not None and isinstance(value, str) else value
        return cls(**parsed)

    @classmethod
    def from_cli(cls, values: dict, **settings) -> "ScorerOptions":
        """From the values of ``cli_common.model_options`` (keyed by click's parameter names; other keys
        are ignored; None is an option not given) and further option values in ``settings`` (batch_size,
        workers, resize, a device that "auto" resolved to, ...), which win. A backend left out is the
        command line's default for the precision (``backends.default_backend``)."""
        from ..backends import default_backend

        chosen = {}
        if "net" in values or "model" in values:
            chosen["model"] = str(values.get("model") or values.get("net") or DEFAULTS.model)
        for name in OPTION_NAMES:
            info = option_info(name)
            key = info.dest or (info.flag or "").lstrip("-").replace("-", "_")
            if info.flag is None or values.get(key) is None:  # None: not given (e.g. lpips-video's --batch-size)
                continue
            value = values[key]
            chosen[name] = (not value) if info.negated else value
        chosen.update(settings)
        if chosen.get("backend") is None:  # the command line's default: the backend that computes the precision
            chosen["backend"] = default_backend(chosen.get("precision", DEFAULTS.precision))
        return cls(**chosen)

    def keywords(self) -> dict:
        """These options as ``Scorer`` keywords (``model`` included)."""
        return {name: getattr(self, name) for name in OPTION_NAMES}

    def limits(self) -> dict:
        """The options that bound memory and input (max_pixels, tile, max_memory)."""
        return dict(max_pixels=self.max_pixels, tile=self.tile, max_memory=self.max_memory)


OPTION_NAMES = tuple(f.name for f in fields(ScorerOptions))
_INFO = {f.name: f.metadata["option"] for f in fields(ScorerOptions)}
_CHOICES = {"backends": _backend_names, "precisions": _precisions}


def option_info(name: str) -> OptionInfo:
    """The declaration of Scorer option ``name`` (choices given by name are resolved here)."""
    info = _INFO[name]
    if isinstance(info.choices, str):
        return replace(info, choices=_CHOICES[info.choices]())
    return info


# The options that choose the model and where it runs, which every command line offers in this order
# (``cli_common.model_options``; ``model`` as --net/--model). batch_size, workers and resize differ between
# the commands: each declares them with ``cli_common.scorer_option``.
MODEL_OPTIONS = ("model", "version", "baseline", "models_dir", "auto_export", "backend", "device", "precision",
                 "threads", "metrics", "max_pixels", "tile", "max_memory")
# The default of every option as ``DEFAULTS.<name>`` (not validated: reading it imports nothing).
DEFAULTS = SimpleNamespace(**{f.name: f.default for f in fields(ScorerOptions)})
