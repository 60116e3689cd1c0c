"""LPIPS beyond one machine, on Ray (``pip install 'lpips-rt[ray]'``): thin layers over the Scorer.

* ``score_pair_table``: a pair table (CSV/Parquet path or URI, Ray Dataset, list) -> a Ray Dataset of
  ``img0, img1, distance, error, model`` rows (with metrics, theirs after the distance); decoding in CPU
  tasks, an actor pool of Scorers.
* ``write_pair_scores``: the same into a folder of result files, resumable after a killed driver.
* ``all_pairs``: every pair of N images without the N^2 table: near duplicates under a threshold,
  each image's k nearest, the mean pairwise distance.
* ``ray_session``: connect (or start a local cluster) with quiet defaults.

Importing this package imports nothing of Ray; each function does, through ``optional.require``.
"""
from __future__ import annotations

from importlib import import_module

PART_FORMATS = ("parquet", "csv")  # formats of result parts (output.ResultFolder)

__all__ = ["score_pair_table", "write_pair_scores", "all_pairs", "ray_session", "read_results", "ScorerSettings",
           "RunReport", "AllPairsReport", "PART_FORMATS"]

_LAZY = {
    "score_pair_table": "pipeline", "write_pair_scores": "run", "RunReport": "run", "all_pairs": "allpairs",
    "AllPairsReport": "allpairs", "ray_session": "session", "read_results": "output", "ScorerSettings": "settings",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lpips_runtime.cluster' has no attribute {name!r}")
