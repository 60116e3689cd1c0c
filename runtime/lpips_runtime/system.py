"""Facts about the host used for defaults (thread counts)."""
from __future__ import annotations

import os
from functools import lru_cache


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads not counted); at least 1.

    Linux: distinct (physical id, core id) pairs of /proc/cpuinfo, capped by the CPU affinity mask;
    elsewhere the logical count.
    """
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            phys = core = None
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not key and phys is not None and core is not None:
                    cores.add((phys, core))
                    phys = core = None
            if phys is not None and core is not None:
                cores.add((phys, core))
    except OSError:
        pass
    return max(1, min(len(cores) or logical, logical))
