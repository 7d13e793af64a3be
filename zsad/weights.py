"""Where real weights live, how they are checked, and how they are loaded safely.

Library code never downloads. A weights file is looked for, in order, at the explicit path
given in the model spec, in ``$ZSAD_WEIGHTS_DIR`` (default ``~/.cache/zsad/weights``), in
open_clip's download cache (``~/.cache/clip``) and in the Hugging Face hub cache
(``$HF_HUB_CACHE`` or ``~/.cache/huggingface/hub``). Its sha256 is checked against the
published value: the full digest where it is published, otherwise the digest prefix that
open_clip and segment-anything put in their file names, and for Hugging Face snapshots the
blob name (which *is* the file's sha256). Files are loaded with ``torch.load(weights_only=True)``
or safetensors, so a pickle that would run code is refused.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where weights are loaded, not where they are only located
    import torch


class WeightsError(ValueError):
    """A weights file is missing, corrupt, of the wrong sha256 or unsafe to load."""


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file.

    Attributes:
        key: ``family/arch/pretrained``.
        filename: file name as published.
        sha256: full published digest, or ``None`` where none is published.
        sha256_prefix: digest prefix from the published file name, or ``None``.
        url: where a user with a network gets it (never fetched by library code).
        hf_repo: Hugging Face repository whose cached snapshot may hold it.
    """

    key: str
    filename: str
    sha256: str | None
    sha256_prefix: str | None
    url: str
    hf_repo: str | None = None


KNOWN_WEIGHTS: dict[str, WeightsFile] = {w.key: w for w in (
    WeightsFile("clip/ViT-B-16-plus-240/laion400m_e32", "vit_b_16_plus_240-laion400m_e32-699c4b84.pt", None,
                "699c4b84", "https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/"
                "vit_b_16_plus_240-laion400m_e32-699c4b84.pt"),
    WeightsFile("clip/ViT-L-14-336/openai", "open_clip_model.safetensors", None, None,
                "https://huggingface.co/timm/vit_large_patch14_clip_336.openai (open_clip_model.safetensors; MuSc's "
                "default backbone, the OpenAI weights as an open_clip state dict)",
                "timm/vit_large_patch14_clip_336.openai"),
    WeightsFile("clipseg/rd64-refined/CIDAS", "model.safetensors", None, None,
                "https://huggingface.co/CIDAS/clipseg-rd64-refined (config.json + model.safetensors)",
                "CIDAS/clipseg-rd64-refined"),
    WeightsFile("sam/vit_h/sa-1b", "sam_vit_h_4b8939.pth", None, "4b8939",
                "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),
    WeightsFile("sam/vit_l/sa-1b", "sam_vit_l_0b3195.pth", None, "0b3195",
                "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"),
    WeightsFile("sam/vit_b/sa-1b", "sam_vit_b_01ec64.pth", None, "01ec64",
                "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    WeightsFile("dino/dinov2_vits14/lvd142m", "dinov2_vits14_pretrain.pth", None, None,
                "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth (torch.hub's file)"),
    WeightsFile("dino/dinov2_vits14/hf", "model.safetensors", None, None,
                "https://huggingface.co/facebook/dinov2-small (model.safetensors)", "facebook/dinov2-small"),
    WeightsFile("dino/dinov2_vitb14/lvd142m", "dinov2_vitb14_pretrain.pth", None, None,
                "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth (torch.hub's file)"),
    WeightsFile("dino/dinov2_vitb14/hf", "model.safetensors", None, None,
                "https://huggingface.co/facebook/dinov2-base (model.safetensors)", "facebook/dinov2-base"),
    WeightsFile("dino/dinov2_vitl14/lvd142m", "dinov2_vitl14_pretrain.pth", None, None,
                "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth (torch.hub's file)"),
    WeightsFile("dino/dinov2_vitl14/hf", "model.safetensors", None, None,
                "https://huggingface.co/facebook/dinov2-large (model.safetensors)", "facebook/dinov2-large"),
    WeightsFile("dino/dino_vitb16/imagenet", "dino_vitbase16_pretrain.pth", None, None,
                "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
    WeightsFile("dino/dino_vitb16/hf", "model.safetensors", None, None,
                "https://huggingface.co/facebook/dino-vitb16 (model.safetensors)", "facebook/dino-vitb16"),
    WeightsFile("isnet/isnet/general-use", "isnet-general-use.pth", None, None,
                "https://github.com/xuebinqin/DIS (README: 'isnet-general-use.pth', Google Drive)"),
)}

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, memoised on (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        from .datasets.base import file_sha256
        _SHA_CACHE[key] = file_sha256(p)
    return _SHA_CACHE[key]


def hf_blob_digest(path: Path) -> str | None:
    """For a file in a Hugging Face cache snapshot (a link into ``blobs/``), the blob name."""
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if target.parent.name == "blobs" and len(target.name) == 64:
            return target.name
    return None


def verify_sha256(path: Path, expected: str | None = None, prefix: str | None = None) -> str:
    """Check ``path``'s sha256 against ``expected`` (full) or ``prefix``; returns the digest."""
    digest = sha256_file(path)
    blob = hf_blob_digest(path)
    if expected and digest != expected.lower():
        raise WeightsError(f"{path}: sha256 is {digest}, expected {expected}. The file is corrupt or not "
                           "the published one; fetch it again.")
    if prefix and not digest.startswith(prefix.lower()):
        raise WeightsError(f"{path}: sha256 is {digest}, which does not start with {prefix} as the published "
                           "file name says. The file is corrupt or not the published one; fetch it again.")
    if blob and digest != blob:
        raise WeightsError(f"{path}: sha256 is {digest} but the Hugging Face cache recorded {blob}; "
                           "the cached file is corrupt; delete it and fetch it again.")
    return digest


def search_dirs() -> list[Path]:
    """Folders searched for weights files, in order."""
    return [Path(os.environ.get("ZSAD_WEIGHTS_DIR", Path.home() / ".cache" / "zsad" / "weights")),
            Path.home() / ".cache" / "clip"]


def hf_snapshots(repo: str) -> list[Path]:
    """Cached snapshot folders of a Hugging Face repository (newest first)."""
    root = Path(os.environ.get("HF_HUB_CACHE", Path(os.environ.get("HF_HOME", Path.home() / ".cache" /
                                                                    "huggingface")) / "hub"))
    snaps = root / ("models--" + repo.replace("/", "--")) / "snapshots"
    return sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True) if snaps.is_dir() else []


def candidate_paths(wf: WeightsFile) -> list[Path]:
    """Every place ``wf`` is looked for."""
    paths = [d / wf.filename for d in search_dirs()]
    if wf.hf_repo:
        paths += [s / wf.filename for s in hf_snapshots(wf.hf_repo)]
    return paths


def resolve_weights(key: str, explicit: str | None = None) -> tuple[Path, str]:
    """Find and check the weights for ``key``; returns (path, sha256).

    Raises:
        WeightsError: naming the file, where it was looked for and where to get it.
    """
    wf = KNOWN_WEIGHTS.get(key)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir() and wf is not None:
            path = path / wf.filename
        if not path.is_file():
            hint = f" Get it from {wf.url}." if wf else ""
            raise WeightsError(f"weights for {key}: {path} does not exist.{hint}")
        return path, verify_sha256(path, wf.sha256 if wf else None, wf.sha256_prefix if wf else None)
    if wf is None:
        raise WeightsError(f"no published weights are known for {key!r}; give a local path in the model spec "
                           f"(known: {sorted(KNOWN_WEIGHTS)}) or use pretrained='random'")
    tried = candidate_paths(wf)
    for path in tried:
        if path.is_file():
            return path, verify_sha256(path, wf.sha256, wf.sha256_prefix)
    where = "\n  ".join(str(p) for p in tried)
    raise WeightsError(f"weights file {wf.filename} for {key} not found. Looked in:\n  {where}\n"
                       f"Fetch it from {wf.url} into {search_dirs()[0]} (or run `zsad weights fetch` where a "
                       "network exists), or give its path in the model spec. zsad never downloads by itself.")


def safe_load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict with safetensors or ``torch.load(weights_only=True)``.

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers and a ``module.`` prefix.
    """
    import torch
    from safetensors import SafetensorError
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, SafetensorError) as exc:
        raise WeightsError(f"{path}: cannot be loaded as plain tensors ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}). zsad loads with weights_only=True "
                           "and refuses pickles that run code; use the published file or a .safetensors copy.") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: expected a dict of tensors (a state dict), got {type(sd).__name__}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_checked(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)`` with an error naming the file and the mismatching keys."""
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsError(f"{path}: tensor shapes do not fit {type(model).__name__}: "
                           f"{str(exc).splitlines()[1:3]}. Is it the right architecture's file?") from None
    if missing or unexpected:
        raise WeightsError(f"{path}: does not fit {type(model).__name__}: missing keys {missing[:5]}"
                           f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                           f"{'...' if len(unexpected) > 5 else ''}. Is it the right architecture's file?")


def weights_key(spec) -> str:
    """``family/arch/pretrained`` of a ``ModelSpec``."""
    return f"{spec.family}/{spec.arch}/{spec.pretrained}"


def locate_weights(spec) -> tuple[Path | None, str]:
    """(path, sha256) of a ``ModelSpec``'s weights; (None, "random:<family>/<arch>") for random ones."""
    if spec.is_random:
        return None, f"random:{spec.family}/{spec.arch}"
    return resolve_weights(weights_key(spec), spec.weights)
