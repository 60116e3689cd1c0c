"""Data package ``lpips_rt_models``: the net manifest (``nets.toml``) and vendored backbone weights.

It holds no code beyond locating its own files; ``lpips_runtime.model.nets`` parses the manifest.
Exported ``.onnx`` files land in this folder by default but are never packaged.
"""
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = MODELS_DIR / "nets.toml"
