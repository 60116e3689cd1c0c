"""Which TensorRT: full TensorRT (``tensorrt``, data-centre and every NVIDIA GPU) or TensorRT for RTX
(``tensorrt_rtx``: GeForce/RTX PRO GPUs, Ampere and newer; builds engines without a GPU). One thin import
shim: the builder and the backend call the same API on either module.

Flavour names as the sidecar records them: ``tensorrt`` and ``tensorrt-rtx``. Standard library only.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from types import ModuleType

from ..errors import LpipsError, MissingExtraError


@dataclass(frozen=True)
class Flavour:
    name: str  # as recorded in the sidecar
    module: str  # the import name
    extra: str  # the lpips-rt extra that installs it
    option: str  # the lpips-export --trt-flavour value


FULL = Flavour("tensorrt", "tensorrt", "trt", "full")
RTX = Flavour("tensorrt-rtx", "tensorrt_rtx", "trt-rtx", "rtx")
FLAVOURS = {f.name: f for f in (FULL, RTX)}
OPTIONS = {f.option: f for f in (FULL, RTX)}

# TensorRT-RTX's build targets (its ComputeCapability enum). Hopper (9.0: H100/H200) is not among them:
# data-centre GPUs need full TensorRT. Turing (7.5) is built only when asked for (--trt-sm 75).
RTX_SMS = ("75", "80", "86", "89", "120", "121")
# An RTX engine built without --trt-sm is portable across these (TensorRT-RTX's default: Ampere and newer).
RTX_PORTABLE = ("80", "86", "89", "120", "121")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def installed() -> list[Flavour]:
    """The flavours importable here (full TensorRT first)."""
    return [f for f in (FULL, RTX) if _importable(f.module)]


def pick(option: str | None = None) -> Flavour:
    """The flavour ``option`` (``full``/``rtx``) names, or with ``None``/``auto`` the installed one (full TensorRT
    where both are). ``MissingExtraError`` naming the extra(s) when it is not installed."""
    if option not in (None, "auto"):
        if option not in OPTIONS:
            raise LpipsError(f"TensorRT flavour '{option}': use auto, full or rtx")
        return OPTIONS[option]
    found = installed()
    if not found:
        raise MissingExtraError("tensorrt_rtx", "trt-rtx",
                                "building or running TensorRT engines (full TensorRT: lpips-rt[trt])")
    return found[0]


def load(flavour: Flavour, purpose: str) -> ModuleType:
    """Import the flavour's module; ``MissingExtraError`` naming its extra if absent."""
    try:
        return importlib.import_module(flavour.module)
    except ImportError:
        raise MissingExtraError(flavour.module, flavour.extra, purpose) from None


def parse_sms(text: str | None) -> tuple[str, ...]:
    """``"86,89"`` (or ``"8.6, 8.9"``) -> ("86", "89"), checked against TensorRT-RTX's targets; None/"" -> ()."""
    if not text:
        return ()
    sms = []
    for part in str(text).split(","):
        sm = part.strip().replace(".", "")
        if sm not in RTX_SMS:
            raise LpipsError(f"--trt-sm {part.strip()!r}: TensorRT-RTX builds for {', '.join(RTX_SMS)} "
                             "(Hopper 9.0 and other data-centre GPUs need full TensorRT)")
        if sm not in sms:
            sms.append(sm)
    return tuple(sms)


def sm_of(compute_capability: str) -> str:
    """"8.6" -> "86"."""
    return re.sub(r"\D", "", compute_capability)
