"""``zsad weights``: which files are expected, their sha256, where they are looked for;
``fetch`` is the only code in zsad that downloads, and only when asked to."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Any

from zsad.weights import KNOWN_WEIGHTS, WeightsError, candidate_paths, search_dirs, verify_sha256

from .command_requests import WeightsRequest


def config_keys(config: str) -> list[str]:
    """The weights keys of every model a pipeline config builds (random-weight models need none)."""
    from zsad.tasks.plan import MODEL_SPECS
    from zsad.weights import weights_key

    from .configs import load_pipeline_config
    cfg = load_pipeline_config(config)
    specs = [spec for of_config in MODEL_SPECS.values() if (spec := of_config(cfg)) is not None]
    return list(dict.fromkeys(weights_key(s) for s in specs if not s.is_random))


def list_weights(config: str | None = None) -> list[dict[str, Any]]:
    """Every known weights file (or those ``config`` needs): where it is looked for, whether it is there."""
    keys = config_keys(config) if config else list(KNOWN_WEIGHTS)
    unknown = [k for k in keys if k not in KNOWN_WEIGHTS]
    if unknown:
        raise WeightsError(f"config {config!r} needs weights zsad has no entry for: {unknown}; give their paths as "
                           f"'weights' in a JSON config")
    rows = []
    for wf in (KNOWN_WEIGHTS[k] for k in keys):
        found = next((p for p in candidate_paths(wf) if p.is_file()), None)
        rows.append({"key": wf.key, "file": wf.filename, "sha256": wf.sha256 or (f"{wf.sha256_prefix}..." if
                     wf.sha256_prefix else "not published"), "found": str(found) if found else None,
                     "looked_in": [str(p.parent) for p in candidate_paths(wf)], "source": wf.url})
    return rows


def fetch(key: str, dest: str | None = None) -> Path:
    """Download one published file into ``dest`` (default: the first search folder) and check it."""
    if key not in KNOWN_WEIGHTS:
        raise WeightsError(f"unknown weights {key!r}; known: {sorted(KNOWN_WEIGHTS)}")
    wf = KNOWN_WEIGHTS[key]
    target_dir = Path(dest) if dest else search_dirs()[0]
    if wf.hf_repo:
        try:
            from huggingface_hub import snapshot_download
            folder = snapshot_download(wf.hf_repo, local_dir=target_dir / wf.hf_repo.replace("/", "--"))
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"could not download {wf.hf_repo} ({exc}); fetch {wf.url} by hand") from None
        return Path(folder) / wf.filename
    if not wf.url.startswith(("https://", "http://", "file://")) or " " in wf.url:
        raise WeightsError(f"{wf.filename} has no direct download link; get it by hand from {wf.url} and put it in "
                           f"{target_dir}")
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / wf.filename
    part = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(wf.url, timeout=60) as resp, open(part, "wb") as f:
            shutil.copyfileobj(resp, f)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise WeightsError(f"could not download {wf.url} ({exc}); no network here? Fetch it by hand into "
                           f"{target_dir}") from None
    try:
        verify_sha256(part, wf.sha256, wf.sha256_prefix)
    except WeightsError:
        part.unlink(missing_ok=True)
        raise
    part.rename(target)
    return target


def run_weights(request: WeightsRequest) -> Any:
    """``zsad weights list|fetch``."""
    if request.action == "list":
        return list_weights(request.config)
    if not request.key:
        raise ValueError("weights fetch needs --key (see `zsad weights list`)")
    return {"fetched": str(fetch(request.key, request.dest))}
