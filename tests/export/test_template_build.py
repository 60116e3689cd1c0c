"""The torch-free build of the stock graphs (``template_build``): the same graphs the torch export writes."""
from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from lpips_export.template_build import build_from_template, has_template
from lpips_export.templates import template_specs
from lpips_runtime.model.bundle import bundle_specs, verify_bundle
from lpips_runtime.errors import LpipsError
from lpips_runtime.model.modelfile import ModelSpec, read_model


def test_templates_cover_every_v01_bundle():
    assert all(has_template(spec) for spec in template_specs())
    assert len(template_specs()) == 3 * len(bundle_specs("alex"))


@pytest.mark.parametrize("net", ["alex", pytest.param("squeeze", marks=pytest.mark.slow),
                                 pytest.param("vgg", marks=pytest.mark.slow)])
def test_template_build_writes_the_torch_exports_graph(net, exported_spec, tmp_path):
    """Every template filled with the verified offline weights gives the graph of the (checked) torch export
    byte for byte: the same graph_sha256, hence the same outputs. Fails when a graph changes and the templates
    were not regenerated (python -m lpips_export.templates)."""
    for spec in bundle_specs(net):
        built = read_model(build_from_template(spec, tmp_path))
        torch_export = read_model(exported_spec(spec))
        assert built.spec == spec
        assert built.metadata["graph_sha256"] == torch_export.metadata["graph_sha256"], spec.filename()
        assert "torch-free" in built.metadata["exporter"]


def test_cli_builds_the_bundle_without_torch(tmp_path, monkeypatch):
    """With torch not importable, `lpips-export --net squeeze` builds the bundle from the templates (and says so
    in one line); what needs torch names the extra."""
    from lpips_export.cli import main

    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "torch" else
                        __import__("importlib.machinery").machinery.PathFinder.find_spec(name))
    result = CliRunner().invoke(main, ["--net", "squeeze", "--out", str(tmp_path), "--offline"])
    assert result.exit_code == 0, result.output
    assert "building from graph templates (torch is not installed)" in result.stderr
    assert len(result.stdout.strip().splitlines()) == len(bundle_specs("squeeze")) + 1
    verify_bundle(tmp_path, ModelSpec("squeeze"))
    fp16 = CliRunner().invoke(main, ["--net", "squeeze", "--precision", "fp16", "--out", str(tmp_path)])
    assert fp16.exit_code == 1 and "lpips-rt[export]" in fp16.output


def test_no_template_names_the_torch_export(tmp_path):
    with pytest.raises(LpipsError, match=r"no torch-free template .* pip install 'lpips-rt\[export\]'"):
        build_from_template(ModelSpec("alex", version="0.0"), tmp_path)


def test_a_file_written_alone_keeps_its_bundle_manifest_true(tmp_path):
    """`--distance-only` into a folder holding a bundle rewrites that file and its manifest entry: the bundle still
    verifies and the runtime opens the new file (a stale entry would refuse it)."""
    import json

    from lpips_export.cli import main
    from lpips_runtime.model.locate import locate_model

    assert CliRunner().invoke(main, ["--net", "squeeze", "--from-templates", "--out", str(tmp_path), "-q"]).exit_code == 0
    manifest = tmp_path / "lpips-squeeze-v0.1.bundle.json"
    data = json.loads(manifest.read_text())
    data["files"][0]["sha256"] = "0" * 64  # as if the file had been rewritten since
    manifest.write_text(json.dumps(data))
    with pytest.raises(Exception, match="differs from the file its bundle manifest"):
        locate_model(ModelSpec("squeeze"), tmp_path, auto_export=False)
    again = CliRunner().invoke(main, ["--net", "squeeze", "--distance-only", "--from-templates", "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output
    locate_model(ModelSpec("squeeze"), tmp_path, auto_export=False)
    verify_bundle(tmp_path, ModelSpec("squeeze"))
