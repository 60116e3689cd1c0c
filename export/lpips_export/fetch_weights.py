"""``python -m lpips_export.fetch_weights [alex vgg squeeze]``: fetch and verify backbone weights ahead
of time (e.g. before going offline), printing where each comes from."""
from __future__ import annotations

import logging
import sys

from lpips_runtime.errors import LpipsError
from lpips_runtime.nets import get_net


def fetch(net: str) -> str:
    """Verify ``net``'s backbone from the first available source; returns a description of it."""
    import torchvision

    from .backbone_weights import load_backbone

    spec = get_net(net)
    features = getattr(torchvision.models, spec.torchvision_builder)(weights=None).features
    keys = [f"features.{k}" for k in features.state_dict()]
    return load_backbone(spec, keys).source


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    nets = (argv if argv is not None else sys.argv[1:]) or ["alex"]
    try:
        for net in nets:
            print(f"{net}: {fetch(net)}")
    except LpipsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
