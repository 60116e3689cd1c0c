"""Fetch and verify backbone weights ahead of time (e.g. before going offline), printing where each
comes from: ``lpips-export --fetch-weights --net NET``, or for several nets at once
``python -m lpips_export.fetch_weights [alex vgg squeeze]``."""
from __future__ import annotations

import os

import click

from lpips_runtime.commands.common import tool_version_option
from lpips_runtime.errors import LpipsError
from lpips_runtime.model.nets import NET_NAMES, get_net
from lpips_runtime.optional import require


def fetch(net: str, user_file: str | None = None) -> str:
    """Verify ``net``'s backbone from the first available source (``user_file`` first, if given);
    returns a description of the source. Needs the export extra (torch, torchvision)."""
    require("torch", "export", "fetching backbone weights")
    torchvision = require("torchvision", "export", "fetching backbone weights")
    from .backbone_weights import load_backbone

    spec = get_net(net)
    features = getattr(torchvision.models, spec.torchvision_builder)(weights=None).features
    keys = [f"features.{k}" for k in features.state_dict()]
    return load_backbone(spec, keys, user_file=user_file).source


def fetch_and_print(nets: list[str], user_file: str | None = None) -> None:
    """``fetch`` each net and print ``<net>: <source>`` on stdout; library errors become one-line click errors."""
    from lpips_runtime.stdio import stdout_to_stderr

    try:
        for net in nets:
            with stdout_to_stderr():
                source = fetch(net, user_file)
            click.echo(f"{net}: {source}")
    except LpipsError as exc:
        raise click.ClickException(str(exc)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("nets", nargs=-1, type=click.Choice(NET_NAMES))
@click.option("--offline", is_flag=True, help="Never try torchvision's download (same as LPIPS_RT_OFFLINE=1).")
@tool_version_option
def main(nets, offline):
    """Fetch and verify the backbone weights of NETS (default: all), printing where each comes from:
    torchvision's cache or download, else the verified offline source. Every source is checked against
    the digest pinned in nets.toml."""
    from lpips_runtime.commands.common import setup_logging

    setup_logging(info=True)
    if offline:
        os.environ["LPIPS_RT_OFFLINE"] = "1"
    fetch_and_print(list(nets or NET_NAMES))


if __name__ == "__main__":
    main()
