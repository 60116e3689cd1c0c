"""Connect to a Ray cluster (or start a local one) with quiet defaults: no dashboard, no worker
output on the driver's stdout (it carries results only), Ray Data's progress bars and INFO logs off."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import ClusterError, first_line
from ..optional import require

PURPOSE = "running on a Ray cluster"


def require_ray():
    """The ``ray`` module with Ray Data importable, or ``MissingExtraError`` naming the ``ray`` extra."""
    ray = require("ray", "ray", PURPOSE)
    require("ray.data", "ray", PURPOSE)
    return ray


def quiet_ray_data() -> None:
    """Ray Data prints progress bars and per-dataset INFO lines by default: keep stderr for our progress."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ... and says so in a warning ("Progress bars disabled..."): that one module's chatter, not Ray Data's.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def use_token_if_available() -> None:
    """Send Ray's authentication token when there is one and no mode is set (``RAY_AUTH_MODE``): a
    cluster started by ``ray start`` authenticates clients whenever a token exists where it started,
    and Ray's clients only send one in token mode. Sending one to a cluster without authentication
    is harmless (measured with Ray 2.60). Ray reads the mode when it is imported, so once it is, this
    changes nothing: switching the variable later broke actor creation on a cluster this process had
    started itself (``ray.cluster_utils.Cluster``, tests/runtime/cluster/test_two_nodes.py)."""
    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
                object_store_memory: int | None = None, resources: dict | None = None,
                temp_dir: str | None = None) -> Iterator:
    """Use the connected Ray session, else connect to ``address`` (e.g. "auto" or "10.0.0.1:6379"), else
    start a local cluster with the given CPUs, GPUs, object store bytes and custom resources (those
    four apply only when starting one). A cluster started here stops on exit; a connected one is left
    running. Yields the ``ray`` module."""
    if address is not None or os.environ.get("RAY_ADDRESS"):
        use_token_if_available()
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        if address is None:
            options.update(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory,
                           resources=resources, _temp_dir=temp_dir)
        try:
            ray.init(address, **{k: v for k, v in options.items() if v is not None})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise ClusterError(f"cannot connect to {where} ({first_line(exc)}): start one with `ray start --head` "
                               "and pass its address (--ray-address)") from None
        started = True
    quiet_ray_data()
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__


@contextlib.contextmanager
def cluster_errors() -> Iterator[None]:
    """Turn what a distributed run raises into our typed errors: an ``LpipsError`` raised on a worker
    (wrapped by Ray, possibly twice) is re-raised as itself; other Ray failures become ``ClusterError``
    with a one-line message."""
    ray = require_ray()
    try:
        yield
    except ray.exceptions.RayError as exc:
        from ..errors import LpipsError

        for cause in _causes(exc):
            if isinstance(cause, LpipsError):
                raise cause from None
        last = list(_causes(exc))[-1]
        text = str(last).strip().splitlines()
        raise ClusterError(f"the Ray run failed: {type(last).__name__}: {text[-1] if text else ''}") from None
