"""``lpips-serve`` on Ray Serve: the very app of ``lpips_runtime.serve`` (its routes, limits, metrics,
API key and dynamic batcher) in every replica of one deployment, behind Ray Serve's HTTP proxy.

Replicas: a fixed number, or autoscaling between a minimum and a maximum on Ray Serve's ongoing-request
target; each replica reserves CPUs and a fraction of a GPU. Requests are batched by the app's own
batcher inside each replica, not by ``@serve.batch``: it is the batcher lpips-serve already has and
tests (same-shape buckets, since padding would change distances; admission bounds with 503 +
Retry-After; the batch-size histogram on /metrics), so one replica behaves as one lpips-serve
process; benchmarks/ray_serve.py measured it against ``@serve.batch`` (benchmarks/README.md, "Ray
Serve": more pairs/s in every run so far, 1.45x on the loaded 2-core machine, 1.18x in a quiet --quick run).

Use it from Python (``build_application`` + ``deploy`` on a connected Ray session) or from a ``serve run``/``serve deploy`` config file naming
``lpips_runtime.cluster.serve:application`` with its ``args`` (see ``application``; README, "Scaling
out"). Needs the ``serve`` and ``ray`` extras.
"""
from __future__ import annotations

import logging
from dataclasses import fields

from ..errors import ClusterError, LpipsError, first_line
from .session import require_ray
from ..core.options import OPTION_NAMES
from .settings import ScorerSettings, WorkerModel

# Scorer options a config file does not set: the batch size is the service's max_batch, replicas never spin
# between runs, and frames are the float graph's. ``metrics`` (e.g. "psnr,ssim") is set as lpips-serve's
# --metrics: the fused graph that computes them is shipped to the replicas, and each answer carries them.
_NOT_IN_CONFIG = {"batch_size", "spin_between_runs", "frames"}

DEPLOYMENT = "LpipsService"
APP_NAME = "lpips"


class LpipsReplica:
    """One replica: a Scorer over the shipped model, and the lpips-serve app around it (built by Ray
    Serve after this constructor; Ray Serve runs the app's lifespan: warm-up, then drain at shutdown)."""

    def __init__(self, model: WorkerModel, serve_settings, cpus: float = 1.0):
        # Between model calls the replica decodes and answers requests: ORT workers must not spin then.
        self.scorer = model.scorer(cpus, spin_between_runs=False)
        self.serve_settings = serve_settings
        self.service_app = None  # not ``app``: Ray Serve's ingress wrapper owns that name

    def __serve_build_asgi_app__(self):
        from ..serve.app import create_app

        self.service_app = create_app(self.scorer, self.serve_settings)
        return self.service_app

    def check_health(self) -> None:
        """Ray Serve's periodic health check: a replica whose model cannot run is replaced."""
        service = getattr(getattr(self.service_app, "state", None), "service", None)
        if service is not None and service.status == "failed":
            raise RuntimeError("the model cannot run in this replica")


def build_application(settings: ScorerSettings = ScorerSettings(), serve_settings=None, *, replicas: int = 1,
                      max_replicas: int | None = None, target_ongoing_requests: float | None = None,
                      cpus_per_replica: float = 1.0, gpus_per_replica: float = 0.0, replica: type | None = None):
    """The Ray Serve application (``deploy`` it): ``replicas`` replicas, or autoscaling from
    ``replicas`` up to ``max_replicas`` (Ray Serve's default target of ongoing requests per replica
    unless ``target_ongoing_requests``). The model is located (or exported) here and shipped to the
    replicas. ``replica``: a subclass of ``LpipsReplica`` to run instead (benchmarks/ray_serve.py
    measures another batching so).

    Each replica takes up to ``max_queue`` requests at once, so that its own batcher sees them together
    and its admission bound (503 + Retry-After) applies; Ray Serve's proxy queues at most as many again
    before it answers 503 itself. A replica being stopped gets ``timeout_s`` + 5 s to finish its
    requests, as ``lpips-serve`` does on SIGTERM."""
    from ray import serve

    from ..serve.settings import ServeSettings

    serve_settings = serve_settings or ServeSettings()
    if max_replicas is not None and max_replicas < replicas:
        raise LpipsError(f"max_replicas ({max_replicas}) is below replicas ({replicas})")
    model = WorkerModel.resolve(for_service(settings, serve_settings), maps=serve_settings.heatmap)
    options = dict(name=DEPLOYMENT, max_ongoing_requests=serve_settings.max_queue,
                   max_queued_requests=serve_settings.max_queue,
                   graceful_shutdown_timeout_s=serve_settings.timeout_s + 5,
                   ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica})
    if max_replicas is None:
        options["num_replicas"] = replicas
    else:
        autoscaling = {"min_replicas": replicas, "max_replicas": max_replicas}
        if target_ongoing_requests is not None:
            autoscaling["target_ongoing_requests"] = target_ongoing_requests
        options["autoscaling_config"] = autoscaling
    deployment = serve.deployment(serve.ingress()(replica or LpipsReplica), **options)
    return deployment.bind(model, serve_settings, cpus_per_replica)


def for_service(settings: ScorerSettings, serve_settings) -> ScorerSettings:
    """The replicas' Scorer settings: its batch size is the service's largest batch (as lpips-serve's)."""
    from dataclasses import replace

    return replace(settings, batch_size=serve_settings.max_batch)


def application(args: dict):
    """Application builder for Ray Serve config files (``import_path:
    lpips_runtime.cluster.serve:application``). ``args`` takes the names of ``ScorerSettings`` (model,
    version, baseline, backend, device, precision, threads, workers, resize, models_dir, auto_export,
    metrics: "psnr,ssim" or a list, as lpips-serve's --metrics; a size may be written as on the command
    line, e.g. max_memory: 2G), of ``ServeSettings``
    (max_batch, max_wait_ms, max_queue, max_body_mb, max_pairs, timeout_s, heatmap, ...; the API key
    from the environment variable ``api_key_env`` names, never from the file), the Scorer's limits
    (max_pixels: lpips-serve's default unless given; tile, max_memory) and cpus_per_replica /
    gpus_per_replica. Replicas and autoscaling come from the config's
    ``deployments`` section (deployment name ``LpipsService``), which overrides these options."""
    import os

    from ..serve.settings import SERVE_MAX_PIXELS, ServeSettings

    args = dict(args or {})
    cpus, gpus = float(args.pop("cpus_per_replica", 1.0)), float(args.pop("gpus_per_replica", 0.0))
    key_env = args.pop("api_key_env", None)
    if "api_key" in args:  # a config file is read by many and kept in version control
        raise LpipsError("give the API key through the environment: api_key_env: <VARIABLE>")
    if key_env:
        args["api_key"] = os.environ.get(key_env) or None
    scorer_names = set(OPTION_NAMES) - _NOT_IN_CONFIG
    serve_names = {f.name for f in fields(ServeSettings)}
    unknown = sorted(set(args) - scorer_names - serve_names)
    if unknown:
        raise LpipsError(f"unknown lpips application argument(s): {', '.join(unknown)}")
    args.setdefault("max_pixels", SERVE_MAX_PIXELS)
    if "warmup_size" in args:
        args["warmup_size"] = tuple(args["warmup_size"])
    scorer = ScorerSettings.from_text({k: v for k, v in args.items() if k in scorer_names})
    service = ServeSettings(**{k: v for k, v in args.items() if k in serve_names})
    return build_application(scorer, service, cpus_per_replica=cpus, gpus_per_replica=gpus)


def deploy(app, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Start Ray Serve's HTTP proxy on host:port on the connected Ray session's cluster (if Serve is not
    running there yet: a running Serve keeps its own address) and run ``app`` at "/", returning once
    its replicas run (their /readyz turns 200 when the model is warm). ``ray.serve.delete(APP_NAME)``
    removes it, ``ray.serve.shutdown()`` stops Serve."""
    ray = require_ray()
    from ray import serve

    if not ray.is_initialized():
        raise LpipsError("no Ray session: call ray.init(...) or use lpips_runtime.cluster.ray_session()")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # "Started Serve ..." is chatter on stderr
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:  # Ray Serve says which deployment failed; the replicas' logs say why
        raise ClusterError(f"{first_line(exc)} (the replicas' logs are in the Ray session folder, logs/serve/)") from None
