"""``lpips-serve``: LPIPS over HTTP (/v1 and the Open Inference Protocol v2), one or several models.

Every option can also come from an environment variable ``LPIPS_SERVE_<PARAMETER>`` (click's
``auto_envvar_prefix``: ``--max-batch`` is ``LPIPS_SERVE_MAX_BATCH``, ``--version`` is
``LPIPS_SERVE_LPIPS_VERSION``, flags take true/false); the command line wins over the environment.

Exit codes: 0 stopped by SIGTERM after finishing the requests in flight; 1 the model or the address
cannot be used (one line on stderr); 2 bad usage; 130 stopped by Ctrl-C (after the same drain).
"""
from __future__ import annotations

import logging
import signal
import sys

import click

from ..commands.common import (
    errors_to_click,
    model_options,
    open_scorer,
    scorer_option,
    setup_logging,
    tool_version_option,
)
from ..errors import ModelFileError
from ..limits import format_size
from ..model.nets import NET_NAMES, VERSIONS
from ..optional import require
from .settings import SERVE_MAX_PIXELS, ServeSettings

ENV_PREFIX = "LPIPS_SERVE"
API_KEY_ENV = f"{ENV_PREFIX}_API_KEY"
# What to start with when a model part is missing: the distance model alone is a valid service.
_WITHOUT = {"spatial": " (or start with --no-heatmap to serve distances only)",
            "encoder": " (or start with --tile off to score every pair in one piece)",
            "head": " (or start with --tile off to score every pair in one piece)"}
_DEFAULTS = ServeSettings()
log = logging.getLogger("lpips_runtime.serve")


def _uvicorn_logging(level: str, json_logs: bool) -> dict:
    """uvicorn's own logging set-up, with its access log moved from stdout to stderr, each line with
    its request id; ``json_logs``: one JSON object per line (``tracing.JsonFormatter``)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["filters"] = {"request_id": {"()": "lpips_runtime.serve.tracing.RequestIdFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["request_id"]
    config["formatters"]["access"]["fmt"] += " request_id=%(request_id)s"
    if json_logs:
        for name in ("default", "access"):
            config["formatters"][name] = {"()": "lpips_runtime.serve.tracing.JsonFormatter"}
    for logger in config["loggers"].values():
        logger["level"] = level.upper()
    return config


def _our_logging(json_logs: bool) -> None:
    """The lpips_runtime loggers' handler (set by ``setup_logging``): request ids, and JSON if asked."""
    from .tracing import JsonFormatter, RequestIdFilter

    for handler in logging.getLogger("lpips_runtime").handlers:
        handler.addFilter(RequestIdFilter())
        if json_logs:
            handler.setFormatter(JsonFormatter())


def _parse_nets(text: str | None) -> list[tuple[str, str | None]]:
    """"alex,vgg:0.0" -> [("alex", None), ("vgg", "0.0")] (None: the --version option's)."""
    if not text:
        return []
    out = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        net, _, version = item.partition(":")
        if net not in NET_NAMES or (version and version not in VERSIONS):
            raise click.BadParameter(f"'{item}': give NET[:VERSION] items, NET from {', '.join(NET_NAMES)}, "
                                     f"VERSION from {', '.join(VERSIONS)}", param_hint="--nets")
        out.append((net, version or None))
    return out


def _open_scorers(model_opts: dict, nets: list, **settings) -> list:
    """One Scorer per served model: the model options as given, or once per --nets item with its net and
    version. Every model file is located and verified now (before the port is bound)."""
    if not nets:
        return [open_scorer(model_opts, **settings)]
    if model_opts.get("model"):
        raise click.UsageError("--nets and --model exclude each other: --model serves one exported file")
    scorers = []
    try:
        for net, version in nets:
            scorers.append(open_scorer({**model_opts, "net": net,
                                        "lpips_version": version or model_opts["lpips_version"]},
                                       quiet=bool(scorers), **settings))
    except BaseException:
        for scorer in scorers:
            scorer.close()
        raise
    return scorers


_SPARE_FILES = 128  # descriptors beyond the connections: models, logs, spooled uploads, the loop's own


def _room_for_connections(wanted: int) -> int:
    """``wanted`` connections, with the process's open-file limit raised to fit them where the hard limit
    allows; else fewer, said once. A cap above what the process can open would never be reached: accept()
    would fail first, and the idle connections could no longer be closed to make room for probes."""
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + _SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft >= need:
        return wanted
    fitted = max(1, soft - _SPARE_FILES)
    log.warning("lpips-serve: --max-connections %d lowered to %d: the open-file limit is %d (raise it with "
                "ulimit -n)", wanted, fitted, soft)
    return fitted


def _server_class(uvicorn):
    class DrainingServer(uvicorn.Server):
        """uvicorn's server, telling the service when a shutdown signal arrives (so that /readyz turns
        503 while the requests in flight finish) and stopping when the model cannot be loaded."""

        exit_code = 0
        service = None

        def handle_exit(self, sig, frame):
            if self.service is not None:
                self.service.begin_drain()
            if sig == signal.SIGINT:
                self.exit_code = 130
            super().handle_exit(sig, frame)

        def fail(self, message: str) -> None:
            self.exit_code = 1
            self.should_exit = True

    return DrainingServer


# --max-pixels (a model option) answers 413 here; a server's default is lower than the library's.
@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True,
                                 "default_map": {"max_pixels": format_size(SERVE_MAX_PIXELS, pixels=True)},
                                 "auto_envvar_prefix": ENV_PREFIX})
@tool_version_option
@model_options
@click.option("--nets", metavar="LIST", help="Serve several models in one process, e.g. alex,vgg,squeeze or "
              "alex:0.0,alex:0.1 (NET[:VERSION]; default version: --version). Each has its own batcher; "
              "--max-memory and --max-queue-mpx are shared equally. /v1 answers with the first.")
@click.option("--export-missing", is_flag=True,
              help="Export a missing model inside the server (needs the [export] extra and torch; slow, ~1 GB). "
                   "Default: a missing model stops the start with the lpips-export command to run.")
@click.option("--host", default="127.0.0.1", help="Address to bind. Anything but loopback exposes the service: "
              "set an API key and put it behind TLS.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000)
@click.option("--api-key", envvar=API_KEY_ENV, show_envvar=True,
              help="Require 'Authorization: Bearer <key>' on the scoring routes (prefer the environment "
                   "variable: options are visible in the process list).")
@click.option("--protect-metrics", is_flag=True, help="Require the API key on /metrics too.")
@click.option("--max-batch", type=click.IntRange(min=1), default=_DEFAULTS.max_batch,
              help="Most pairs per model call (1: no batching).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=_DEFAULTS.max_wait_ms,
              help="Longest a pair waits for same-size company while other requests are arriving.")
@click.option("--max-queue", type=click.IntRange(min=2), default=_DEFAULTS.max_queue,
              help="Pairs admitted and not yet run; more get 503 with Retry-After.")
@click.option("--max-queue-mpx", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.max_queue_mpx,
              help="Megapixels of decoded pairs waiting for the model; more get 503.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.max_body_mb,
              help="Largest request body in MiB (413 beyond it, refused while reading).")
@click.option("--max-bodies-mb", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.max_bodies_mb,
              help="Memory for request bodies being read, service-wide, in MiB (a JSON body counts 3x its "
                   "size); a body that does not fit gets 503 before it is read. At least 3 x --max-body-mb.")
@click.option("--max-pairs", type=click.IntRange(min=1), default=_DEFAULTS.max_pairs,
              help="Most pairs in one /v1/distance/batch or v2 infer request (413 beyond it).")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.timeout_s,
              help="Longest a request may take, upload included (504 beyond it).")
@click.option("--max-connections", type=click.IntRange(min=1), default=_DEFAULTS.max_connections,
              help="Most open connections; when full, the one idle longest is closed to make room.")
@click.option("--header-timeout-s", type=click.FloatRange(min=0, min_open=True),
              default=_DEFAULTS.header_timeout_s,
              help="Longest a client may take to send a request's head (408 and closed beyond it).")
@click.option("--keep-alive-s", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.keep_alive_s,
              help="Idle kept-alive connections are closed after this.")
@scorer_option("workers")
@scorer_option("resize", help="none (sizes must match), first, or WxH, as lpips-score --resize.")
@click.option("--heatmap/--no-heatmap", default=True,
              help="Serve /v1/heatmap (loads the spatial model too: export it with --spatial).")
@click.option("--access-log/--no-access-log", default=True, help="One line per request on stderr.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              help="json: one JSON object per log line (time, level, logger, message, request_id, trace ids).")
def main(nets, export_missing, host, port, api_key, protect_metrics, max_batch, max_wait_ms, max_queue, max_queue_mpx,
         max_body_mb, max_bodies_mb, max_pairs, timeout_s, max_connections, header_timeout_s, keep_alive_s, workers,
         resize, heatmap, access_log, log_level, log_format, **model_opts):
    """Serve LPIPS over HTTP: POST /v1/distance, /v1/distance/batch, /v1/heatmap; the Open Inference
    Protocol (KServe v2, Triton HTTP) under /v2 (models lpips-<net>, versions 0.0/0.1); GET /healthz,
    /readyz, /metrics; API docs at /docs. Models are opened and warmed after start: /readyz says when
    they are ready. SIGTERM finishes the requests in flight, then exits 0. Every option can also be set
    as LPIPS_SERVE_<OPTION> (e.g. LPIPS_SERVE_MAX_BATCH=8, LPIPS_SERVE_NETS=alex,vgg).

    \b
    lpips-serve --net alex                      http://127.0.0.1:8000
    lpips-serve --nets alex,vgg,squeeze --metrics psnr,ssim
    LPIPS_SERVE_API_KEY=secret lpips-serve --host 0.0.0.0 --port 8080
    """
    setup_logging()
    log.setLevel(logging.INFO)
    _our_logging(log_format == "json")
    nets = _parse_nets(nets)
    with errors_to_click():
        uvicorn = require("uvicorn", "serve", "lpips-serve")
        for module in ("fastapi", "prometheus_client", "python_multipart"):
            require(module, "serve", "lpips-serve")
        count = max(1, len(nets))
        # Several models share the memory budgets: each Scorer and each batcher gets an equal part.
        max_connections = _room_for_connections(max_connections)
        settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                 max_queue_mpx=max_queue_mpx / count, max_body_mb=max_body_mb,
                                 max_bodies_mb=max_bodies_mb, max_pairs=max_pairs, timeout_s=timeout_s, api_key=api_key,
                                 max_connections=max_connections, header_timeout_s=header_timeout_s,
                                 keep_alive_s=keep_alive_s,
                                 metrics_need_key=protect_metrics, heatmap=heatmap, decode_workers=workers)
        if count > 1:
            model_opts["max_memory"] = max(1 << 20, model_opts["max_memory"] // count)
            log.info("lpips-serve: %d models share the budgets: --max-memory %d MiB and --max-queue-mpx %g each",
                     count, model_opts["max_memory"] >> 20, settings.max_queue_mpx)
        # Between model calls the process decodes and answers requests: ORT workers must not spin then.
        # A server never exports on demand (minutes and ~1 GB inside the service): a missing file is an error
        # naming the one lpips-export command (locate.missing_model_message), unless --export-missing.
        scorers = _open_scorers(model_opts, nets, batch_size=max_batch, workers=workers, resize=resize,
                                spin_between_runs=False, auto_export=export_missing and not model_opts["no_export"])
        try:
            for scorer in scorers:
                _check_model_files(scorer, heatmap)
        except BaseException:
            for scorer in scorers:
                scorer.close()
            raise
    from .app import create_app
    from .frontdoor import guarded_protocol

    server = None
    app = create_app(scorers, settings, on_fatal=lambda message: server.fail(message))
    config = uvicorn.Config(app, host=host, port=port, log_config=_uvicorn_logging(log_level, log_format == "json"),
                            access_log=access_log,
                            # requests are bounded by --timeout-s, so a drain cannot take longer than that
                            timeout_graceful_shutdown=timeout_s + 5,
                            # heads, connections and their timeouts are bounded there (probes always get in)
                            http=guarded_protocol(settings), ws="none", timeout_keep_alive=settings.keep_alive_s)
    server = _server_class(uvicorn)(config)
    server.service = app.state.models  # told when a drain starts: every model turns not ready
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        log.warning("lpips-serve: listening on %s without an API key: anyone who can reach it can use it", host)
    # uvicorn re-raises the stop signal once it has drained; these handlers receive it instead, so a
    # drained SIGTERM ends with exit code 0 (what process managers expect of a clean stop).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn could not start (it said why: e.g. the address is in use)
        sys.exit(0 if exc.code in (0, None) else 1)
    sys.exit(server.exit_code)


def _check_model_files(scorer, heatmap: bool) -> None:
    """Model files are located and verified now, so that a wrong option fails before the port is bound;
    opening and warming them happens after start (see /readyz)."""
    for part in scorer.model_parts(maps=heatmap) + scorer.tile_parts():
        try:
            scorer.part_info(part)
        except ModelFileError as exc:  # the distance model alone is a valid service: say how
            raise ModelFileError(f"{exc}{_WITHOUT.get(part, '')}") from None


if __name__ == "__main__":
    main()
