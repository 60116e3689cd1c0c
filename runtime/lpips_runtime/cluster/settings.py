"""What a cluster worker needs to build the same Scorer as the driver: its options, and the checked
model files themselves (shipped through Ray's object store, so nodes need no shared models folder and
never export on their own)."""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ModelFileError
from ..images import DEFAULT_MAX_PIXELS
from ..limits import DEFAULT_WORK_MEMORY
from ..modelfile import ModelSpec

MODEL_CACHE_ENV = "LPIPS_RT_NODE_MODELS"  # where workers keep shipped models (default: <tmp>/lpips-rt-models)


@dataclass(frozen=True)
class ScorerSettings:
    """The options of the Scorer every worker opens (same meaning as ``Scorer``'s keywords).

    ``model`` is a net name or an export's path on the driver. ``threads=None`` on a worker means its
    CPU allotment (``cpus``), not every core of the node: several workers share a node. ``max_pixels``,
    ``tile`` and ``max_memory`` bound every worker as they bound one Scorer (decode tasks included).
    """

    model: str = "alex"
    version: str = "0.1"
    baseline: bool = False
    backend: str = "ort"
    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None
    batch_size: int = 16
    resize: str = "none"
    models_dir: str | None = None
    auto_export: bool = True  # on the driver only: workers get the files and never export
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    tile: str | int = "auto"
    max_memory: int = DEFAULT_WORK_MEMORY

    @classmethod
    def from_cli(cls, options: dict, gpus: float = 0.0, **settings) -> "ScorerSettings":
        """From the values of ``cli_common.model_options`` plus batch_size/resize keywords. Device
        "auto" means the workers' device: CUDA when they get GPUs (``gpus`` > 0), else the CPU; no
        backend means the command line's default for the precision."""
        from ..backends import default_backend

        device = options["device"]
        if device == "auto":
            device = "cuda" if gpus else "cpu"
        return cls(model=str(options["model"] or options["net"]), version=options["lpips_version"],
                   baseline=options["baseline"], backend=options["backend"] or default_backend(options["precision"]),
                   device=device, precision=options["precision"], threads=options["threads"],
                   models_dir=options["models_dir"], auto_export=not options.get("no_export", False),
                   max_pixels=options["max_pixels"], tile=options["tile"], max_memory=options["max_memory"],
                   **settings)

    def open(self, **overrides):
        """A Scorer with these settings (on the driver: locates or exports the model as usual)."""
        from ..scorer import Scorer

        s = replace(self, **overrides) if overrides else self
        return Scorer(s.model, version=s.version, baseline=s.baseline, backend=s.backend, device=s.device,
                      precision=s.precision, threads=s.threads, batch_size=s.batch_size, resize=s.resize,
                      models_dir=s.models_dir, auto_export=s.auto_export, **s.limits())

    def limits(self) -> dict:
        """The Scorer keywords that bound memory and input."""
        return dict(max_pixels=self.max_pixels, tile=self.tile, max_memory=self.max_memory)


@dataclass(frozen=True)
class WorkerModel:
    """The resolved model of a run, as workers get it: the driver's spec (frames chosen), the settings,
    and the bytes of every file workers need, keyed by file name.

    Actors get it whole as a constructor argument (Ray stores a large argument in the object store
    and keeps it for restarts; a reference nested in a small argument would not be kept, see
    ray-project/ray#53727); decode tasks get ``without_files()``.
    """

    settings: ScorerSettings
    spec: ModelSpec
    files: dict[str, bytes] = field(repr=False)

    @classmethod
    def resolve(cls, settings: ScorerSettings, parts: tuple[str, ...] = ("fused",)) -> "WorkerModel":
        """Locate (or export) the model on the driver and read its files: ``parts`` among "fused",
        "encoder", "head" (the feature cache's split graphs) and "spatial" (the fused per-pixel map).
        With "fused", the split graphs come too where the Scorer may tile a large pair (``Scorer.tile``),
        as far as they exist or can be exported (else such a pair fails as it would in one process)."""
        with settings.open() as scorer:
            files = {}

            def add(part: str) -> None:
                info = scorer.model_info(spatial=True) if part == "spatial" else scorer.model_info(part=part)
                files[info.spec.filename()] = info.path.read_bytes()  # the name workers look up

            for part in parts:
                add(part)
            if "fused" in parts and scorer.tile != "off" and scorer.can_tile():
                for part in ("encoder", "head"):
                    try:
                        add(part)
                    except ModelFileError:
                        pass
            return cls(settings, scorer.spec, files)

    def without_files(self) -> "WorkerModel":
        """This model without its files: enough for ``decoder()``."""
        return replace(self, files={})

    @property
    def label(self) -> str:
        """The ``model`` column of result rows (as ``lpips-score --out`` writes it)."""
        return self.spec.describe()

    def decoder(self):
        """A Scorer for ``load_pair``/``load_one`` only (decode, validate, resize): it never opens a
        backend, needs no model file and runs on any node."""
        from ..scorer import Scorer

        s = self.spec
        return Scorer(s.net, version=s.version, baseline=not s.calibrated, precision=s.precision, frames=s.frames,
                      batch_size=self.settings.batch_size, resize=self.settings.resize, auto_export=False,
                      max_pixels=self.settings.max_pixels)

    def scorer(self, cpus: float = 1.0, **options):
        """The worker's Scorer over the shipped files (installed once per node), never exporting.
        ``options``: further Scorer keywords (e.g. ``spin_between_runs`` for a service)."""
        from ..scorer import Scorer

        folder = self.install()
        s, threads = self.spec, self.settings.threads or max(1, int(round(cpus)))
        return Scorer(s.net, version=s.version, baseline=not s.calibrated, backend=self.settings.backend,
                      device=self.settings.device, precision=s.precision, frames=s.frames, threads=threads,
                      batch_size=self.settings.batch_size, resize=self.settings.resize, models_dir=folder,
                      auto_export=False, **self.settings.limits(), **options)

    def install(self) -> Path:
        """Write the files into this node's model cache (a folder per content digest; each file written
        under a temporary name and renamed, so concurrent workers never see half a file)."""
        files = self.files
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        root = Path(os.environ.get(MODEL_CACHE_ENV) or Path(tempfile.gettempdir()) / "lpips-rt-models")
        folder = root / digest.hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            target = folder / name
            if target.is_file() and target.stat().st_size == len(data):
                continue  # the Scorer re-checks every file's graph digest when it opens it
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".partial")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return folder
