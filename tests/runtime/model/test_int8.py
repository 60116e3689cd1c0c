"""--precision int8: declared, routed to OpenVINO, and refused per net (one line naming the precisions the net has)
while no int8 model of that net meets the accuracy acceptance (lpips_runtime.model.int8; benchmarks/int8_accuracy.py)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from lpips_runtime import Scorer
from lpips_runtime.backends import PRECISIONS, default_backend, split_precision
from lpips_runtime.commands.score import main
from lpips_runtime.errors import BackendError
from lpips_runtime.model.int8 import OFFERED, REFUSED
from lpips_runtime.model.nets import NET_NAMES


def test_int8_is_a_precision_computed_from_the_fp32_export_on_openvino():
    assert "int8" in PRECISIONS
    assert split_precision("int8") == ("fp32", "int8")
    assert default_backend("int8") == "openvino"


def test_every_net_is_either_offered_or_refused_with_a_reason():
    assert set(NET_NAMES) == set(OFFERED) | set(REFUSED) and not set(OFFERED) & set(REFUSED)


@pytest.mark.parametrize("net", sorted(REFUSED))
def test_refused_net_names_its_precisions(net, tmp_path):
    # refused before anything is exported or loaded: the models folder stays empty
    with pytest.raises(BackendError) as info:
        Scorer(net, backend="openvino", precision="int8", models_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and f"int8 is not offered for LPIPS-{net}" in message
    assert "--precision fp32" in message and "--precision bf16" in message
    assert not list(tmp_path.iterdir())


def test_ort_backend_does_not_compute_int8(tmp_path):
    with pytest.raises(BackendError, match="does not compute in int8: use --backend openvino"):
        Scorer("alex", backend="ort", precision="int8", models_dir=tmp_path)


def test_cli_int8_exits_1_with_one_line(photo_pair_files, tmp_path):
    a, b = photo_pair_files[0]
    result = CliRunner().invoke(main, ["--net", "alex", "--models-dir", str(tmp_path), "--precision", "int8",
                                       str(a), str(b)])
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()  # a note that int8 means --backend openvino, then the error
    assert lines[-1].startswith("Error: int8 is not offered for LPIPS-alex") and "Traceback" not in result.stderr
