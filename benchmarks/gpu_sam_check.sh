#!/usr/bin/env bash
# Issue 29's GPU checks in one run (device tool: `run`, timeout_s 600), everything under $OUT:
# the environment, the stock-vs-new benchmark with realistic survivors, the whole precompute's
# stages with zsad's generator, and the CUDA equality check. About 8 minutes on an H200.
# Not run yet (no GPU was lent to issue 29). The machine needs zsad's dependencies
# (segment-anything, open_clip, transformers...; carried as wheels, /work/.library/device/README.md);
# zsad itself is installed here without them, editable, so that zsad.flows imports.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
PY=${PY:-python3}
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
{ nvidia-smi; $PY -c "import torch, torchvision, segment_anything; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name(0))"; } 2>&1 | tee "$OUT/env.txt"
timeout 300 $PY benchmarks/bench_sam.py --device cuda --variants stock,new,new+batch,new+batch+shared,new+batch+bf16,new+batch+bf16+compile 2>&1 | tee "$OUT/bench_sam.md"
timeout 150 $PY benchmarks/bench_models.py --device cuda --stages isnet,sam,clip_image,clipseg --survivors --sam-options batch=auto,bf16 --images-per-batch 8 --batch 64 --precision bf16 2>&1 | tee "$OUT/bench_models.md"
timeout 120 $PY benchmarks/sam_cuda_equality.py --device cuda 2>&1 | tee "$OUT/equality.md"
