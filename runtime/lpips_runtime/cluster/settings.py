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
from ..limits import available_cpus
from ..model.modelfile import ModelSpec
from ..core.options import ScorerOptions

MODEL_CACHE_ENV = "LPIPS_RT_NODE_MODELS"  # where workers keep shipped models (default: <tmp>/lpips-rt-models)


# The options of the Scorer every worker opens: ``ScorerOptions`` itself (same names, defaults and checks
# as ``Scorer``'s keywords). ``model`` is a net name or an export's path on the driver; ``threads=None`` on a
# worker means its CPU allotment (``cpus``, at most the CPUs its process may use), not every core of the
# node: several workers share a node;
# ``max_pixels``, ``tile`` and ``max_memory`` bound every worker as they bound one Scorer (decode tasks
# included); ``auto_export`` applies on the driver only: workers get the files and never export.
ScorerSettings = ScorerOptions


def open_scorer(settings: ScorerOptions, **overrides):
    """A Scorer with ``settings``, some replaced by ``overrides`` (on the driver: locates or exports the
    model as usual)."""
    from ..core.scorer import Scorer

    return Scorer.from_options(replace(settings, **overrides) if overrides else settings)


def settings_from_cli(options: dict, gpus: float = 0.0, **settings) -> ScorerOptions:
    """The workers' options from the values of ``cli_common.model_options`` plus batch_size/resize
    keywords. Device "auto" means the workers' device: CUDA when they get GPUs (``gpus`` > 0), else the CPU."""
    device = options["device"]
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    return ScorerOptions.from_cli(options, device=device, **settings)


@dataclass(frozen=True)
class WorkerModel:
    """The resolved model of a run, as workers get it: the driver's spec (frames chosen), the settings,
    the run's identity, and the bytes of every file workers need, keyed by file name.

    Actors get it whole as a constructor argument (Ray stores a large argument in the object store
    and keeps it for restarts; a reference nested in a small argument would not be kept, see
    ray-project/ray#53727); decode tasks get ``without_files()``.
    """

    settings: ScorerOptions
    spec: ModelSpec
    identity: dict  # the driver's ``Scorer.identity``: what every worker computes with
    files: dict[str, bytes] = field(repr=False)

    @classmethod
    def resolve(cls, settings: ScorerOptions, *, distances: bool = True, maps: bool = False,
                feature_cache: bool = False) -> "WorkerModel":
        """Locate (or export) the model on the driver and read the files of ``Scorer.model_parts`` (the
        fused graph for ``distances``; with ``maps`` the spatial one, with ``feature_cache`` the split
        graphs), and for distances or maps those of its ``tile_parts`` as far as they exist or can be
        exported (else a pair too large for one piece fails as it would in one process)."""
        with open_scorer(settings) as scorer:
            files = {}

            def add(part: str) -> None:
                info = scorer.part_info(part)
                files[info.spec.filename()] = info.path.read_bytes()  # the name workers look up

            for part in scorer.model_parts(distances=distances, maps=maps, feature_cache=feature_cache):
                add(part)
            for part in scorer.tile_parts() if distances or maps else ():
                try:
                    add(part)
                except ModelFileError:
                    pass
            return cls(settings, scorer.spec, scorer.identity, files)

    def without_files(self) -> "WorkerModel":
        """This model without its files: enough for ``decoder()``."""
        return replace(self, files={})

    @property
    def label(self) -> str:
        """The ``model`` column of result rows (as ``lpips-score --out`` writes it)."""
        return self.identity["model"]

    def _spec_options(self) -> dict:
        """The driver's resolved model as option values (a net name, the frames chosen, the precision the
        distances are computed in), so that every worker opens the very same graph."""
        s = self.spec
        return dict(model=s.net, version=s.version, baseline=not s.calibrated, precision=self.identity["precision"],
                    frames=s.frames, metrics=s.metrics, auto_export=False)

    def decoder(self):
        """A Scorer for ``load_pair``/``load_one`` only (decode, validate, resize): it never opens a
        backend, needs no model file and runs on any node."""
        from ..core.options import DEFAULTS

        return open_scorer(self.settings, **{**self._spec_options(), "precision": self.spec.precision,
                                             "tile": "off", "backend": DEFAULTS.backend, "device": DEFAULTS.device,
                                             "threads": None, "workers": None, "models_dir": None})

    def scorer(self, cpus: float = 1.0, **options):
        """The worker's Scorer over the shipped files (installed once per node), never exporting.
        ``options``: further Scorer options (e.g. ``spin_between_runs`` for a service)."""
        # A node's logical CPUs (Ray's num_cpus) may exceed the cores it has: an actor of 4 CPUs on a 2-core
        # node gets 2 threads (more would only contend), not a Scorer that refuses threads=4 and kills the actor.
        threads = self.settings.threads or max(1, min(int(round(cpus)), available_cpus()))
        return open_scorer(self.settings, **{**self._spec_options(), "threads": threads,
                                             "models_dir": self.install(), **options})

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
