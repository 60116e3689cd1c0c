"""The models folder rule (--models-dir > $LPIPS_RT_MODELS > ./models if present > the user data folder),
shared by the runtime and lpips-export's default --out, and the missing-model message."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lpips_runtime.errors import ModelFileError
from lpips_runtime.model.locate import MODELS_ENV, locate_model, resolve_models_dir, user_models_dir
from lpips_runtime.model.modelfile import ModelSpec


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working folder, no $LPIPS_RT_MODELS, and a private user data folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def test_precedence(elsewhere, monkeypatch):
    data_models = elsewhere / "data" / "lpips-rt" / "models"
    assert user_models_dir() == data_models  # platformdirs honours XDG_DATA_HOME on Linux
    chosen = resolve_models_dir()
    assert chosen.path == data_models and "user data folder" in chosen.origin and not chosen.explicit
    (elsewhere / "work" / "models").mkdir()  # a checkout-like working folder
    assert resolve_models_dir().path == Path("models")
    monkeypatch.setenv(MODELS_ENV, str(elsewhere / "env-models"))
    assert resolve_models_dir().path == elsewhere / "env-models" and resolve_models_dir().explicit
    assert resolve_models_dir(elsewhere / "given").path == elsewhere / "given"


def test_missing_model_message_names_places_and_ways_out(elsewhere, monkeypatch):
    import lpips_runtime.model.locate as locate

    monkeypatch.setattr(locate, "export_available", lambda: False)
    monkeypatch.setattr(locate, "_light_export_available", lambda spec: False)  # neither torch nor onnx here
    with pytest.raises(ModelFileError) as err:
        locate_model(ModelSpec("vgg"))
    data_models = elsewhere / "data" / "lpips-rt" / "models"
    assert str(err.value) == (
        f"no exported model lpips-vgg-v0.1.onnx in {data_models} (the user data folder: no --models-dir, "
        f"$LPIPS_RT_MODELS not set, no ./models in {elsewhere / 'work'}): run `lpips-export --net vgg` "
        "(needs pip install 'lpips-rt[light-export]', no torch), or name the folder that has it with --models-dir DIR or "
        "LPIPS_RT_MODELS=DIR")
    given = elsewhere / "my models"
    with pytest.raises(ModelFileError) as err:
        locate_model(ModelSpec("vgg", spatial=True), given)
    # the one command that writes every variant (the bundle), not one command per variant
    assert f"in {given} (the folder given): run `lpips-export --net vgg --out '{given}'`" in str(err.value)
    with pytest.raises(ModelFileError) as err:
        locate_model(ModelSpec("vgg", precision="fp16"), given)  # not in the bundle: its own command
    assert f"run `lpips-export --net vgg --precision fp16 --out '{given}'`" in str(err.value)
    monkeypatch.setenv(MODELS_ENV, str(given))
    with pytest.raises(ModelFileError) as err:
        locate_model(ModelSpec("vgg"))
    assert f"in {given} ($LPIPS_RT_MODELS)" in str(err.value)


def test_no_export_refuses_on_demand_export(elsewhere, monkeypatch):
    import lpips_export.onnx_export

    monkeypatch.setattr(lpips_export.onnx_export, "export_model", lambda *a, **k: pytest.fail("exported"))
    with pytest.raises(ModelFileError, match=r"run `lpips-export --net alex` \(on-demand export is off\)"):
        locate_model(ModelSpec("alex"), auto_export=False)


def test_lpips_export_default_out_is_the_same_folder(elsewhere, monkeypatch):
    """lpips-export without --out writes where lpips-score looks (checked on the folder handed to the export)."""
    import lpips_export.onnx_export
    from lpips_export.cli import main

    seen = []
    def fake_export(spec, out_dir, **k):
        seen.append(Path(out_dir))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / spec.filename()).write_bytes(b"x")
        return Path(out_dir) / spec.filename(), None

    monkeypatch.setattr(lpips_export.onnx_export, "export_model", fake_export)
    result = CliRunner().invoke(main, ["--net", "alex", "--distance-only"])
    assert result.exit_code == 0, result.output
    assert seen == [elsewhere / "data" / "lpips-rt" / "models"] == [resolve_models_dir().path]
    monkeypatch.setenv(MODELS_ENV, str(elsewhere / "env"))
    CliRunner().invoke(main, ["--net", "alex", "--distance-only"])
    assert seen[-1] == elsewhere / "env"


def test_torch_free_on_demand_build_says_so_first(elsewhere, monkeypatch, caplog):
    """Without torch but with onnx ([light-export]), a missing stock graph is built from its template on demand,
    after one line saying what, where, why and the bundle command."""
    import lpips_runtime.model.locate as locate

    monkeypatch.setattr(locate, "export_available", lambda: False)
    given = elsewhere / "models"
    with caplog.at_level("WARNING", logger="lpips_runtime"):
        info = locate_model(ModelSpec("squeeze", spatial=True), given)
    assert info.spec == ModelSpec("squeeze", spatial=True) and "torch-free" in info.metadata["exporter"]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "lpips_runtime"]
    assert line.startswith(f"exporting lpips-squeeze-v0.1-spatial.onnx to {given} now, because this run needs")
    assert "from the graph template, no torch" in line and f"`lpips-export --net squeeze --out {given}`" in line
