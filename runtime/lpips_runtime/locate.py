"""Find the exported model for a spec in the models folder, exporting it on demand when possible."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

from .errors import ModelFileError
from .modelfile import ModelInfo, ModelSpec, read_model

log = logging.getLogger("lpips_runtime")

MODELS_ENV = "LPIPS_RT_MODELS"


def default_models_dir() -> Path:
    """``$LPIPS_RT_MODELS``, else ``./models`` (where ``lpips-export`` writes by default)."""
    return Path(os.environ.get(MODELS_ENV) or "models")


def export_available() -> bool:
    """Whether the export extra is importable (checked without importing it)."""
    for name in ("torch", "torchvision", "onnx", "lpips_export"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # ValueError: blocked with sys.modules[name] = None
            return False
    return True


def locate_model(spec: ModelSpec, models_dir: Path | None = None, auto_export: bool = True) -> ModelInfo:
    """The checked export for ``spec`` in ``models_dir``.

    A missing file is exported on demand if the export extra is installed and ``auto_export`` is set;
    otherwise ``ModelFileError`` names the command to run.
    """
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    path = models_dir / spec.filename()
    if not path.is_file():
        if not (auto_export and export_available()):
            hint = "" if export_available() else " (needs pip install 'lpips-rt[export]')"
            raise ModelFileError(f"no exported model {path}: run `{spec.export_command(models_dir)}`{hint}")
        from lpips_export.onnx_export import export_model

        log.warning("%s not found: exporting %s now", path, spec.describe())
        with contextlib.redirect_stdout(sys.stderr):  # torch.hub reports downloads on stdout: it carries results
            export_model(spec, models_dir)
    info = read_model(path)
    if info.spec != spec:
        raise ModelFileError(f"{path} holds {info.spec.describe()}, not {spec.describe()}: re-export it")
    return info
