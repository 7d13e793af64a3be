#!/usr/bin/env bash
# Install zsad's built wheel into a fresh environment that already holds an older torch/torchvision
# pair and an older Prefect 3.x, then show what pip kept, added and changed, and that zsad imports
# and runs its CLI there; where that torchvision imports beside that torch, runs the demo there and
# compares its store unit by unit with the same demo on this project's own environment.
# Usage: scripts/check_install_beside.sh [TORCH [TORCHVISION [PREFECT [WORK_DIR]]]]
#   default 2.13.0 0.28.0 3.6.29 and a new temp folder; 2.9.1 0.24.1 is a pair that runs on a CPU here
#   (2.13.0 is a CPU build this machine holds, and PyPI's torchvision 0.28.0 does not import beside it).
#   Downloads 1 to 4 GB. Record it for the docs: benchmarks/record.py scripts/check_install_beside.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TORCH=${1:-2.13.0} VISION=${2:-0.28.0} PREFECT=${3:-3.6.29}
WORK=${4:-$(mktemp -d)}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
rm -rf "$WORK/venv" "$WORK/dist"
"$PY" -m venv "$WORK/venv"
P="$WORK/venv/bin/python"
pipq() {  # pip without the notices about a machine's extra local indexes; pip's own exit status
  "$P" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}
pipq install -q --upgrade pip
pipq install -q "torch==$TORCH" "torchvision==$VISION" "prefect==$PREFECT"
"$P" -m pip freeze > "$WORK/before.txt"
.venv/bin/python -m pip wheel -q --no-deps --wheel-dir "$WORK/dist" . >/dev/null 2>&1
pipq install -q "$WORK"/dist/zsad-*.whl
"$P" -m pip freeze > "$WORK/after.txt"
echo "== python: $("$P" --version), zsad wheel: $(basename "$WORK"/dist/zsad-*.whl)"
"$P" - "$WORK/before.txt" "$WORK/after.txt" <<'PY'
import sys
def pins(path):
    return dict(line.strip().split("==", 1) for line in open(path) if "==" in line)
before, after = pins(sys.argv[1]), pins(sys.argv[2])
print("== kept (before the wheel -> after):")
for pkg in ("torch", "torchvision", "prefect"):
    print(f"  {pkg}=={before.get(pkg)} -> {pkg}=={after.get(pkg)}")
    if before.get(pkg) != after.get(pkg):
        sys.exit(f"REPLACED: {pkg}")
changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
print("== changed by the wheel:" + "".join(f"\n  {k}: {before[k]} -> {after[k]}" for k in changed))
print(f"== added by the wheel: {len(after.keys() - before.keys())} packages; removed: {len(before.keys() - after.keys())}")
PY
echo "== pip check:"
"$P" -m pip check || true
echo "== import and CLI (from $WORK, away from the source tree):"
cd "$WORK"
"$P" -c "import torch, prefect, zsad, zsad.flows; print('  torch', torch.__version__, '| prefect', prefect.__version__, '| zsad', zsad.__version__)"
"$WORK/venv/bin/zsad" --version
echo "== the demo on this torch:"
if "$P" -c "import torchvision" >/dev/null 2>&1; then
  "$WORK/venv/bin/zsad" demo --out "$WORK/demo" --image-size 64 2>&1 | tail -n 1
  if [ -x "$ROOT/.venv/bin/zsad" ]; then
    echo "== the same demo on this project's environment (torch $("$ROOT/.venv/bin/python" -c 'import torch; print(torch.__version__)')), unit by unit:"
    "$ROOT/.venv/bin/zsad" demo --out "$WORK/demo-here" --image-size 64 >/dev/null 2>&1
    "$ROOT/.venv/bin/python" "$ROOT/scripts/compare_stores.py" "$WORK/demo/store.zarr" "$WORK/demo-here/store.zarr" || true
  fi
else
  echo "  not run: torchvision $VISION does not import beside torch $TORCH here ($("$P" -c "import torchvision" 2>&1 | tail -n 1))"
fi
