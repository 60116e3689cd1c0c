"""Where exported models live, and finding the export a spec needs (exporting it on demand when possible).

One rule picks the models folder, for the runtime and for ``lpips-export``'s default ``--out`` alike:
the folder given (``--models-dir``, ``models_dir=``), else ``$LPIPS_RT_MODELS``, else ``./models`` when the
working folder has one (a checkout of this repository), else the user data folder of lpips-rt
(``platformdirs``: ``~/.local/share/lpips-rt/models`` on Linux, honouring ``$XDG_DATA_HOME``).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .bundle import bundle_command, check_against_manifest, refresh_manifest_entry
from ..errors import ModelFileError
from .modelfile import ModelInfo, ModelSpec, read_model

log = logging.getLogger("lpips_runtime")

MODELS_ENV = "LPIPS_RT_MODELS"
APP_NAME = "lpips-rt"
LOCAL_MODELS = Path("models")


@dataclass(frozen=True)
class ModelsFolder:
    """A models folder and how it was chosen (for messages)."""

    path: Path
    origin: str
    explicit: bool = False  # named by the caller (--models-dir, models_dir=, $LPIPS_RT_MODELS)


def user_models_dir() -> Path:
    """The platform's user data folder for lpips-rt, plus ``models``."""
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False) / "models"


def resolve_models_dir(given: str | Path | None = None) -> ModelsFolder:
    """The models folder by the module's rule (see the module docstring)."""
    if given is not None:
        return ModelsFolder(Path(given), "the folder given", explicit=True)
    env = os.environ.get(MODELS_ENV)
    if env:
        return ModelsFolder(Path(env), f"${MODELS_ENV}", explicit=True)
    if LOCAL_MODELS.is_dir():
        return ModelsFolder(LOCAL_MODELS, "./models of the working folder")
    return ModelsFolder(user_models_dir(), f"the user data folder: no --models-dir, ${MODELS_ENV} not set, "
                                           f"no ./models in {Path.cwd()}")


def default_models_dir() -> Path:
    """The models folder when none is given (``resolve_models_dir(None).path``)."""
    return resolve_models_dir().path


def _folder_of(models_dir: str | Path | None) -> ModelsFolder:
    default = resolve_models_dir()
    if models_dir is None or Path(models_dir) == default.path:
        return default
    return resolve_models_dir(models_dir)


def export_available() -> bool:
    """Whether the export extra is importable (checked without importing it)."""
    for name in ("torch", "torchvision", "onnx", "lpips_export"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # ValueError: blocked with sys.modules[name] = None
            return False
    return True


def missing_model_message(spec: ModelSpec, folder: ModelsFolder, auto_export: bool) -> str:
    """One line: which file is missing, where it was looked for and why there, and the one ``lpips-export``
    command that writes it (the bundle's, ``bundle.bundle_command``)."""
    command = bundle_command(spec, folder.path if folder.explicit else None)
    if not export_available():
        extra = "'lpips-rt[light-export]', no torch" if has_template(spec) else "'lpips-rt[export]'"
        how = f"run `{command}` (needs pip install {extra})"
    else:
        how = f"run `{command}` (on-demand export is off)" if not auto_export else f"run `{command}`"
    return (f"no exported model {spec.filename()} in {folder.path} ({folder.origin}): {how}, "
            f"or name the folder that has it with --models-dir DIR or {MODELS_ENV}=DIR")


def has_template(spec: ModelSpec) -> bool:
    """Whether ``spec``'s bundle is built without torch (a graph template ships for it: lpips_export.template_build)."""
    from lpips_rt_models import MODELS_DIR

    from .bundle import in_bundle

    return in_bundle(spec) and (MODELS_DIR / "graph-templates" / (spec.filename() + ".tmpl")).is_file()


def _light_export_available(spec: ModelSpec) -> bool:
    """Whether ``spec`` can be built here without torch (onnx installed and a template ships for it)."""
    for name in ("onnx", "lpips_export"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return has_template(spec)


def missing_model_error(spec: ModelSpec, models_dir: str | Path | None = None) -> ModelFileError | None:
    """The one-line error front ends raise for a model ``spec`` missing from ``models_dir`` (None: the folder
    ``resolve_models_dir`` picks), naming the ``lpips-export`` command that writes it; None if the file is there.
    Servers and lpips-video call this instead of exporting (they never export on demand)."""
    folder = _folder_of(models_dir)
    if (folder.path / spec.filename()).is_file():
        return None
    return ModelFileError(missing_model_message(spec, folder, auto_export=False))


def locate_model(spec: ModelSpec, models_dir: str | Path | None = None, auto_export: bool = True) -> ModelInfo:
    """The checked export for ``spec`` in ``models_dir`` (None: the folder ``resolve_models_dir`` picks).

    A missing file is exported on demand if the export extra is installed and ``auto_export`` is set
    (one line on stderr first saying what is written where and why; anything the export libraries print
    goes to stderr too); otherwise ``ModelFileError`` says where it looked and what to run. A file listed
    in its bundle's manifest must still have the listed size and sha256 (``bundle.check_against_manifest``).
    """
    folder = _folder_of(models_dir)
    path = folder.path / spec.filename()
    if not path.is_file():
        torch_free = not export_available() and _light_export_available(spec)
        if not (auto_export and (export_available() or torch_free)):
            raise ModelFileError(missing_model_message(spec, folder, auto_export))
        from ..stdio import stdout_to_stderr

        log.warning("exporting %s to %s now, because this run needs %s and it is not there (%s); %s, once. "
                    "`%s` writes every variant at once; --no-export refuses",
                    spec.filename(), folder.path, spec.describe(), folder.origin,
                    "a few seconds (from the graph template, no torch)" if torch_free else
                    "10-60 s and about 1 GB of RAM", bundle_command(spec, folder.path if folder.explicit else None))
        with stdout_to_stderr():
            if torch_free:
                from lpips_export.template_build import build_from_template

                build_from_template(spec, folder.path)
            else:
                from lpips_export.onnx_export import export_model

                export_model(spec, folder.path)
        refresh_manifest_entry(path, spec)
    info = read_model(path)
    if info.spec != spec:
        raise ModelFileError(f"{path} holds {info.spec.describe()}, not {spec.describe()}: re-export it")
    check_against_manifest(path, spec)
    return info
