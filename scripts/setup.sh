#!/usr/bin/env bash
# Create .venv and install zsad with the tested set of its dependencies (constraints.txt: torch, torchvision,
# prefect ... as tested; pyproject.toml itself states ranges). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import zsad, zsad.flows, torch, torchvision, prefect, prefect_dask, distributed, open_clip, segment_anything, transformers, zarr, dask, xarray, jinja2, matplotlib, pytest, xdist, moto, s3fs, multipart, watchdog, paho.mqtt, prometheus_client, playwright, hypothesis, cv2, mkdocs, material, mkdocstrings" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[test,docs]'  # the tested set
fi
