"""How a cluster run's work fits the cluster's resources, decided before anything is submitted, and
what a run that stops making progress says.

Ray schedules by declared resources: an actor pool that reserves every CPU leaves none for the decode
tasks (1 CPU each), and Ray waits for a CPU that never frees (a silent hang, measured on a 2-CPU
cluster with ``--actors 2`` and with ``--actors 1 --cpus-per-actor 2``). So:

* actors that cannot all fit the cluster's CPUs/GPUs are an error up front (``ClusterError``);
* when the actors leave less than one CPU free, the actors decode their pairs themselves (no decode
  tasks) instead of waiting for a CPU that no task can get;
* a run that receives no rows for ``STALL_WARN_S`` says so on stderr with the cluster's free and total
  resources, and stops with ``ClusterError`` after ``stall_timeout_s`` (default ``STALL_TIMEOUT_S``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import ClusterError

log = logging.getLogger("lpips_runtime.cluster")

DECODE_CPUS = 1.0  # what one decode task reserves
STALL_WARN_S = 60.0
STALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ResourcePlan:
    cluster_cpus: float
    actor_cpus: float  # reserved by the largest actor pool
    decode_in_actors: bool

    def describe(self) -> str:
        where = "in the actors (no CPU left for decode tasks)" if self.decode_in_actors else "in CPU tasks"
        return f"{self.actor_cpus:g} of {self.cluster_cpus:g} CPUs for actors; decoding {where}"


def plan(actors: int | tuple[int, int], cpus_per_actor: float, gpus_per_actor: float = 0.0,
         total: dict | None = None) -> ResourcePlan:
    """The plan for a pool of ``actors`` (a size, or (min, max)) on the cluster whose resources are
    ``total`` (default: the connected cluster's now)."""
    if total is None:
        import ray

        total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    smallest, largest = actors if isinstance(actors, tuple) else (actors, actors)
    if smallest * cpus_per_actor > cpus + 1e-9:
        raise ClusterError(f"{smallest} actors x {cpus_per_actor:g} CPUs need {smallest * cpus_per_actor:g} CPUs; "
                           f"the cluster has {cpus:g}: lower --actors or --cpus-per-actor")
    if gpus_per_actor and smallest * gpus_per_actor > gpus + 1e-9:
        raise ClusterError(f"{smallest} actors x {gpus_per_actor:g} GPUs need {smallest * gpus_per_actor:g} GPUs; "
                           f"the cluster has {gpus:g}: lower --actors or --gpus-per-actor")
    reserved = min(largest * cpus_per_actor, cpus)
    return ResourcePlan(cpus, reserved, decode_in_actors=cpus - reserved < DECODE_CPUS)


def stall_message(seconds: float, rows: int) -> str:
    """Why a run may be waiting: the cluster's free and total resources now."""
    try:
        import ray

        free, total = ray.available_resources(), ray.cluster_resources()
        names = [k for k in ("CPU", "GPU") if total.get(k)] + sorted(
            k for k in total if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:"))
        state = ", ".join(f"{k} {free.get(k, 0):g} free of {total[k]:g}" for k in names)
    except Exception as exc:  # noqa: BLE001 - the message must not fail the run
        state = f"resources unknown ({type(exc).__name__})"
    return (f"no rows for {seconds:.0f} s ({rows} so far): work is pending resources? cluster: {state}; "
            "a task or actor that asks for more than is free waits (lower --actors/--cpus-per-actor, or add nodes)")
