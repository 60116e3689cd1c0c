"""int8 on the CPU: for which nets it is offered, and why not for the others.

``precision="int8"`` (``--precision int8``) would compute the fp32 export with its backbone convolutions
quantised to int8 (OpenVINO; NNCF post-training quantisation, calibrated on photographs bundled with
scikit-image, the stem and the LPIPS head kept in float). It is offered only for a net whose int8 model met
the same acceptance as bf16 on the accuracy benchmark's natural sets (max abs error <= 1e-3 against fp32,
>= 99.5% of pairwise orderings kept; ``benchmarks/int8_accuracy.py``, benchmarks/README.md "int8 accuracy").

Measured (2026-12-07, benchmarks/README.md "int8, outside-style data and the ceiling table"): no int8 variant
of any net met it (vgg on a reduced set: the example pair and the outside-style pairs, 20 calibration pairs; a
full vgg pass takes hours on the loaded 2-core machine of that run). Quantisation noise on the activations differs
between the two images of a pair and LPIPS measures exactly those small feature differences, so it does not
cancel; keeping more layers in float lowers the error but not to the bound while any layer worth the speed
stays quantised. ``REFUSED`` records the best variant measured per net; ``check_int8`` refuses with it.
"""
from __future__ import annotations

from ..errors import BackendError

# Nets for which int8 is offered (met the acceptance). None so far.
OFFERED: frozenset[str] = frozenset()

# net -> the best int8 variant measured and why it is not offered (benchmarks/int8_accuracy.py).
REFUSED: dict[str, str] = {
    "alex": "its int8 models miss the 1e-3 accuracy bound on natural photographs (max abs 9.0e-3 with 4 of 5 "
            "convolutions quantised, 2.8e-3 with 3 of 5)",
    "squeeze": "its int8 models miss the 1e-3 accuracy bound on natural photographs (max abs 1.4e-2 with 24 of 25 "
               "convolutions quantised, 1.0e-2 with 19 of 25)",
    "vgg": "its int8 model misses the 1e-3 accuracy bound on natural photographs (max abs 5.8e-3 with 12 of 13 "
           "convolutions quantised, on the outside-style pairs)",
}


def check_int8(net: str) -> None:
    """``BackendError`` (one line naming the precisions the net has) unless int8 is offered for ``net``."""
    if net in OFFERED:
        return
    why = REFUSED.get(net, "it has not been measured")
    raise BackendError(f"int8 is not offered for LPIPS-{net}: {why} (benchmarks/README.md, \"int8 accuracy\"); "
                       f"{net} computes in fp32 (--precision fp32) or bf16 (--precision bf16, OpenVINO)")
