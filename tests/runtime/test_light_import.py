"""The runtime is light: it imports and scores with torch, torchvision, tensorrt and the export
package blocked, and importing the package alone loads nothing heavy."""
from __future__ import annotations

import json
import subprocess
import sys

BLOCK = "import sys\nfor m in ('torch', 'torchvision', 'tensorrt', 'lpips', 'lpips_export', 'onnx'):\n" \
        "    sys.modules[m] = None\n"


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_is_cheap():
    out = _run("import lpips_runtime, json\n"
               "print(json.dumps(sorted(m for m in ('cv2', 'onnxruntime', 'numpy') if m in sys.modules)))")
    assert json.loads(out) == []


def test_scores_without_torch(exported, photo_pair_files):
    model = exported("alex")
    p0, p1 = photo_pair_files[0]
    out = _run(f"from lpips_runtime import Scorer\n"
               f"d = Scorer({str(model)!r}).distance({str(p0)!r}, {str(p1)!r})\n"
               f"print(d, 'torch' in sys.modules and sys.modules['torch'] is not None)")
    value, torch_loaded = out.split()
    assert 0.0 < float(value) < 1.0 and torch_loaded == "False"


def test_missing_model_without_export_extra_names_the_command(tmp_path):
    done = subprocess.run([sys.executable, "-c", BLOCK + "from lpips_runtime.commands.score import main\nmain()",
                           "a.png", "b.png", "--models-dir", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: no exported model lpips-alex-v0.1.onnx in {tmp_path} (the folder given): "
                                   f"run `lpips-export --net alex --out {tmp_path}` (needs pip install 'lpips-rt[light-export]', no torch), "
                                   "or name the folder that has it with --models-dir DIR or LPIPS_RT_MODELS=DIR")
