"""``lpips-serve``: LPIPS over HTTP, one model per process.

Exit codes: 0 stopped by SIGTERM after finishing the requests in flight; 1 the model or the address
cannot be used (one line on stderr); 2 bad usage; 130 stopped by Ctrl-C (after the same drain).
"""
from __future__ import annotations

import logging
import signal
import sys

import click

from ..cli_common import (errors_to_click, model_options, open_scorer, scorer_option, setup_logging,
                          tool_version_option)
from ..errors import ModelFileError
from ..limits import format_size
from ..optional import require
from .settings import SERVE_MAX_PIXELS, ServeSettings

API_KEY_ENV = "LPIPS_SERVE_API_KEY"
# What to start with when a model part is missing: the distance model alone is a valid service.
_WITHOUT = {"spatial": " (or start with --no-heatmap to serve distances only)",
            "encoder": " (or start with --tile off to score every pair in one piece)",
            "head": " (or start with --tile off to score every pair in one piece)"}
_DEFAULTS = ServeSettings()
log = logging.getLogger("lpips_runtime.serve")


def _uvicorn_logging(level: str) -> dict:
    """uvicorn's own logging set-up, with its access log moved from stdout to stderr."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    for logger in config["loggers"].values():
        logger["level"] = level.upper()
    return config


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
                                 "default_map": {"max_pixels": format_size(SERVE_MAX_PIXELS, pixels=True)}})
@tool_version_option
@model_options
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
@click.option("--max-pairs", type=click.IntRange(min=1), default=_DEFAULTS.max_pairs,
              help="Most pairs in one /v1/distance/batch request (413 beyond it).")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.timeout_s,
              help="Longest a request may take, upload included (504 beyond it).")
@scorer_option("workers")
@scorer_option("resize", help="none (sizes must match), first, or WxH, as lpips-score --resize.")
@click.option("--heatmap/--no-heatmap", default=True,
              help="Serve /v1/heatmap (loads the spatial model too: export it with --spatial).")
@click.option("--access-log/--no-access-log", default=True, help="One line per request on stderr.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def main(host, port, api_key, protect_metrics, max_batch, max_wait_ms, max_queue, max_queue_mpx, max_body_mb,
         max_pairs, timeout_s, workers, resize, heatmap, access_log, log_level, **model_opts):
    """Serve LPIPS over HTTP: POST /v1/distance, /v1/distance/batch, /v1/heatmap; GET /healthz,
    /readyz, /metrics; API docs at /docs. The model is opened and warmed after start: /readyz says
    when it is ready. SIGTERM finishes the requests in flight, then exits 0.

    \b
    lpips-serve --net alex                      http://127.0.0.1:8000
    LPIPS_SERVE_API_KEY=secret lpips-serve --host 0.0.0.0 --port 8080
    """
    setup_logging()
    log.setLevel(logging.INFO)
    if model_opts.get("metrics"):  # a model option of every front end; the HTTP answers carry LPIPS alone so far
        raise click.UsageError("lpips-serve answers LPIPS distances only: --metrics (PSNR/SSIM) is for lpips-score "
                               "and lpips-video")
    with errors_to_click():
        uvicorn = require("uvicorn", "serve", "lpips-serve")
        for module in ("fastapi", "prometheus_client", "python_multipart"):
            require(module, "serve", "lpips-serve")
        settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                                 max_queue_mpx=max_queue_mpx, max_body_mb=max_body_mb,
                                 max_pairs=max_pairs, timeout_s=timeout_s, api_key=api_key,
                                 metrics_need_key=protect_metrics, heatmap=heatmap, decode_workers=workers)
        # Between model calls the process decodes and answers requests: ORT workers must not spin then.
        scorer = open_scorer(model_opts, batch_size=max_batch, workers=workers, resize=resize,
                             spin_between_runs=False)
        # Model files are located and verified now, so that a wrong option fails before the port is bound;
        # opening and warming them happens after start (see /readyz).
        for part in scorer.model_parts(maps=heatmap) + scorer.tile_parts():
            try:
                scorer.part_info(part)
            except ModelFileError as exc:  # the distance model alone is a valid service: say how
                raise ModelFileError(f"{exc}{_WITHOUT.get(part, '')}") from None
    from .app import create_app

    server = None
    app = create_app(scorer, settings, on_fatal=lambda message: server.fail(message))
    config = uvicorn.Config(app, host=host, port=port, log_config=_uvicorn_logging(log_level), access_log=access_log,
                            # requests are bounded by --timeout-s, so a drain cannot take longer than that
                            timeout_graceful_shutdown=timeout_s + 5,
                            # connections beyond this get uvicorn's bare 503 (health checks keep room)
                            limit_concurrency=max_queue + 64)
    server = _server_class(uvicorn)(config)
    server.service = app.state.service
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


if __name__ == "__main__":
    main()
