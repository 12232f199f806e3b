#!/bin/bash
# GPU checks in one short run (a lent CUDA machine with PyTorch but without this project's other packages):
# the CUDA latency table validated against end-to-end measurements on 30 held-out archs, our UNet vs
# diffusers on the machine's 16 CPU cores, and one more seed of the default proxy trial on CUDA.
# Usage there: benchmarks/device_check.sh OUT_DIR   (wheels in .whl/, a cached domain CLIP in .devcache/)
set -u
out=${1:?output folder}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NAS_CACHE_DIR=$PWD/.devcache NAS_LUT_DIR=/tmp/lut HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv > "$out/gpu.txt"
timeout 240 python3 -m nas.cli lut validate --device cuda --n 30 --seed 12345 --image-size 512 --json \
  > "$out/lut_cuda.json" 2> "$out/lut_cuda.err"
timeout 80 python3 benchmarks/unet_forward.py --device cpu --threads 16 --rounds 5 > "$out/unet_cpu16.json" 2> "$out/unet_cpu16.err"
timeout 110 python3 benchmarks/proxy_budget.py trial --device cuda --seeds 2 > "$out/proxy_trial.jsonl" 2> "$out/proxy_trial.err"
tail -c 3000 "$out"/*.err
