#!/usr/bin/env bash
# Every GPU path of zsad run once, one script, everything under $OUT (one Markdown file a step,
# plus env.txt and steps.txt: each step's exit code and seconds). Under 9 minutes on one H100/H200:
#   1 environment (driver, torch, GPU)
#   2 SAM, zsad's generator against stock, realistic survivors, 1024x768: encoder / decoder /
#     post-processing per variant (bench_sam.py) and equality as the CPU tests define it
#     (sam_cuda_equality.py)
#   3 precompute's stages per image, exact and batched/bf16 (bench_models.py --survivors)
#   4 MuSc at ViT-L-14-336/518 and ViT-B-16-plus-240/240: token stage, mutual step at N = 50 and
#     200 with its fit, device maps against the CPU's (bench_musc.py)
#   5 the pixel metrics on the GPU against the host path (bench_gpu_aggregate.py)
#   6 the service's p50/p95 with the tiny models on the GPU (bench_serve.py)
# --dry-run runs every step on the CPU at tiny sizes (the suite runs it: tests/test_gpu_check.py),
# so the script cannot rot before a GPU comes. A step that fails is recorded and the rest go on;
# the exit code is the number of failed steps.
#
#   OUT=/tmp/out bash benchmarks/gpu_check.sh            # on the device machine (run, timeout_s 600)
#   OUT=/tmp/out bash benchmarks/gpu_check.sh --dry-run  # here, CPU, about two minutes
set -o pipefail
cd "$(dirname "$0")/.."
DRY=0; [ "${1:-}" = "--dry-run" ] && DRY=1
export PYTHONUNBUFFERED=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 OUT=${OUT:-/tmp/out}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ "$DRY" = 0 ] && ! $PY -c "import zsad.flows" 2>/dev/null; then  # the device machine: zsad without deps
  $PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
fi
: > "$OUT/steps.txt"
FAILED=0

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, its output to $OUT/NAME.md
  local name=$1 limit=$(($2 * SLACK)); shift 2
  local t0=$SECONDS rc
  timeout "$limit" "$@" > "$OUT/$name.md" 2>&1; rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$OUT/steps.txt"
  [ "$rc" = 0 ] || { FAILED=$((FAILED + 1)); tail -5 "$OUT/$name.md"; }
}

if [ "$DRY" = 1 ]; then
  DEV=cpu SLACK=4  # a shared 2-core machine running the suite beside it
  SAM=(--sam tiny --image-size 128x96 --points-per-side 8 --variants old,new,new+batch,new+batch+shared,new+batch+bf16)
  EQ=(--sam tiny --sizes 128x96,96x128)
  MODELS=(--tiny --image-size 128x96 --points-per-side 8 --tiles 2 --repeats 1)
  MUSC=(--archs tiny/96 --classes 4 8 --compare-cpu 4)
  AGG=(--images 6)
  SERVE=(--n 1 --per-client 1 --max-s 20)
else
  DEV=cuda SLACK=1
  SAM=(--variants old,new,new+batch,new+batch+shared,new+batch+bf16,new+batch+bf16+compile)
  EQ=()
  MODELS=()
  MUSC=(--classes 50 200 --compare-cpu 8)
  AGG=(--images 300)
  SERVE=(--n 8 --per-client 2 --max-s 40)
fi

{ command -v nvidia-smi >/dev/null && nvidia-smi; date -u; git log -1 --format='%H %s' 2>/dev/null
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"; } \
  > "$OUT/env.txt" 2>&1
step sam 140 $PY benchmarks/bench_sam.py --device $DEV "${SAM[@]}"
step sam_equality 70 $PY benchmarks/sam_cuda_equality.py --device $DEV "${EQ[@]}"
step models_exact 60 $PY benchmarks/bench_models.py --device $DEV --stages isnet,sam,clip_image,clipseg,clip_text \
  --survivors "${MODELS[@]}"
step models_batched 60 $PY benchmarks/bench_models.py --device $DEV --stages sam,clip_image,clipseg --survivors \
  --sam-options batch=auto,bf16 --images-per-batch 8 --batch 64 --precision bf16 "${MODELS[@]}"
step musc 110 $PY benchmarks/bench_musc.py --device $DEV "${MUSC[@]}"
step pixel_metrics 50 $PY benchmarks/bench_gpu_aggregate.py --device $DEV "${AGG[@]}"
step serve 50 $PY benchmarks/bench_serve.py --device $DEV "${SERVE[@]}"
echo "gpu_check: $FAILED step(s) failed; results in $OUT" | tee -a "$OUT/steps.txt"
exit "$FAILED"
