"""DINO / DINOv2 token encoders (``zsad.models.dino_vit``) with each reference's preprocessing.

- ``encode_whole`` (MuSc, ``models/musc.py`` and ``datasets/mvtec.py`` at commit b76b93d): each
  image resized to ``image_size`` square with PIL's bilinear filter (torchvision's ``Resize((s, s))``
  default on a PIL image), ImageNet mean/std; the normed tokens after ``layers``; DINOv2's class
  token replaced by zeros (MuSc's ``fake_cls``), DINO v1's kept; RsCIN's class token is the last
  block's normed class token, not L2-normalised (the reference model's ``forward``).
- ``encode_patches`` (AnomalyDINO, ``src/backbones.py`` at commit b3435f0): the smaller edge resized
  to ``smaller_edge`` with PIL's bicubic filter, the other edge ``int(smaller_edge * long / short)``
  (torchvision's ``Resize(int)``), ImageNet mean/std, then cropped from the top-left to multiples
  of the patch; the last block's normed patch tokens (``get_intermediate_layers(x)[0]``).

Weights: the hub checkpoints (``dinov2_vitl14_pretrain.pth``, ``dino_vitbase16_pretrain.pth``: the
reference's own names) or a Hugging Face snapshot (``facebook/dinov2-large``, ``facebook/dino-vitb16``;
its keys mapped to the reference's by ``hub_state_dict``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..config import ModelSpec
from ..weights import WeightsError, load_checked, safe_load_state_dict
from ._common import batches, check_image, resize_batch, seeded
from .dino_vit import DINO_ARCHS, DinoViT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Hugging Face names (transformers 4.x files and 5.x modules) -> the reference's; ``{qkv}`` parts fused below.
_HF_NAMES = (
    (r"embeddings\.cls_token", "cls_token"), (r"embeddings\.mask_token", "mask_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.(?:norm1|layernorm_before)\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.(?:norm2|layernorm_after)\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.)?(query|key|value|q_proj|k_proj|v_proj)\."
     r"(weight|bias)", r"blocks.\1.attn.{\2}.\3"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layer_scale(\d)\.lambda1", r"blocks.\1.ls\2.gamma"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.(?:mlp\.fc1|intermediate\.dense)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.(?:mlp\.fc2|output\.dense)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
)
_QKV = {"query": 0, "q_proj": 0, "key": 1, "k_proj": 1, "value": 2, "v_proj": 2}


def hub_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the reference's names: a hub checkpoint as it is; a Hugging Face one
    (``Dinov2Model``/``ViTModel``, with or without a ``dinov2.``/``vit.`` prefix) renamed, its
    query/key/value fused into ``qkv`` and its pooler dropped."""
    if "pos_embed" in sd:
        return dict(sd)
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in sd.items():
        name = re.sub(r"^(dinov2|vit)\.", "", key)
        if name.startswith("pooler."):
            continue
        new = next((re.sub(f"^{pat}$", rep, name) for pat, rep in _HF_NAMES if re.fullmatch(pat, name)), None)
        if new is None:
            raise WeightsError(f"unexpected key {key!r}: not a DINO / DINOv2 checkpoint (hub or Hugging Face)")
        found = re.search(r"\{(\w+)\}", new)
        if found:
            parts.setdefault(new.replace(found.group(0), "qkv"), {})[_QKV[found.group(1)]] = value
        else:
            out[new] = value
    for name, qkv in parts.items():
        out[name] = torch.cat([qkv[i] for i in range(3)])
    if "mask_token" in out and out["mask_token"].ndim == 3:
        out["mask_token"] = out["mask_token"].reshape(1, -1)
    return out


class DinoEncoder:
    """Token features of a DINO / DINOv2 tower (``encode_whole`` for MuSc, ``encode_patches`` for
    AnomalyDINO)."""

    def __init__(self, model: DinoViT, device: str = "cpu", batch_size: int = 16, image_size: int | None = None):
        self.model = model.eval().to(device)
        self.device, self.batch_size = device, batch_size
        self.image_size = int(image_size or model.arch.native_size)
        self.weights_sha256 = "random"

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.image_size // self.model.arch.patch
        return g, g

    @property
    def width(self) -> int:
        return self.model.arch.width

    def resolve_layers(self, layers: Sequence[int] | None) -> tuple[int, ...]:
        depth = self.model.arch.depth
        layers = tuple(layers) if layers is not None else (depth - 1,)
        if not layers or any(not isinstance(i, int) or not 0 <= i < depth for i in layers):
            raise ValueError(f"layers must be block indices in 0..{depth - 1} of this DINO tower, got {list(layers)}")
        return layers

    @torch.inference_mode()
    def encode_whole(self, images: Sequence[np.ndarray], layers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """MuSc's features: ``tokens_nltc`` (N, L, 1 + g*g, C) float16, the class token first
        (zeros for DINOv2), and ``class_nd`` (N, C) float32, the last block's normed class token."""
        layers = self.resolve_layers(layers)
        g = self.grid_size[0]
        tokens, classes = [np.zeros((0, len(layers), 1 + g * g, self.width), np.float16)], []
        for sl in batches(len(images), self.batch_size):
            x = resize_batch(images[sl], self.image_size, Image.BILINEAR, IMAGENET_MEAN, IMAGENET_STD)
            outs, cls = self.model.normed_blocks(x.to(self.device), layers)
            t = torch.stack(outs, dim=1)
            if self.model.arch.version == 2:
                t[:, :, 0] = 0
            tokens.append(t.to(torch.float16).cpu().numpy())
            classes.append(cls.float().cpu().numpy())
        return np.concatenate(tokens), np.concatenate(classes or [np.zeros((0, self.width), np.float32)])

    @torch.inference_mode()
    def encode_patches(self, image: np.ndarray, smaller_edge: int) -> tuple[np.ndarray, tuple[int, int]]:
        """AnomalyDINO's features of one image: (gh * gw, C) float32 patch tokens of the last block
        after the final norm, and the grid (gh, gw)."""
        x = anomalydino_input(image, smaller_edge, self.model.arch.patch)
        outs, _ = self.model.normed_blocks(x[None].to(self.device), (self.model.arch.depth - 1,))
        p = self.model.arch.patch
        return outs[0][0, 1:].float().cpu().numpy(), (x.shape[1] // p, x.shape[2] // p)


def resized_size(h: int, w: int, smaller_edge: int) -> tuple[int, int]:
    """torchvision's ``Resize(smaller_edge)`` output (H, W): the short side ``smaller_edge``, the
    long ``int(smaller_edge * long / short)``.

    Example:
        >>> resized_size(1000, 1500, 448), resized_size(900, 900, 448)
        ((448, 672), (448, 448))
    """
    if w <= h:
        return int(smaller_edge * h / w), smaller_edge
    return smaller_edge, int(smaller_edge * w / h)


def anomalydino_input(image: np.ndarray, smaller_edge: int, patch: int) -> torch.Tensor:
    """(3, H', W') float32: AnomalyDINO's ``prepare_image`` of an (H, W, 3) uint8 RGB image."""
    check_image(image)
    h, w = resized_size(image.shape[0], image.shape[1], smaller_edge)
    pil = Image.fromarray(np.ascontiguousarray(image))
    if pil.size != (w, h):
        pil = pil.resize((w, h), resample=Image.BICUBIC)
    x = torch.from_numpy(np.asarray(pil, np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return x[:, :h - h % patch, :w - w % patch]


def build_dino(spec: ModelSpec, weights_path: Path | None = None, device: str = "cpu", batch_size: int = 16,
               precision: str = "fp32", image_size: int | None = None) -> DinoEncoder:
    """A DINO / DINOv2 tower for ``spec.arch`` (``DINO_ARCHS``); random weights when
    ``weights_path`` is None. ``image_size``: MuSc's square input side (default the stored grid's)."""
    if spec.arch not in DINO_ARCHS:
        raise ValueError(f"unknown DINO architecture {spec.arch!r}; expected one of {', '.join(DINO_ARCHS)}")
    if precision != "fp32":
        raise ValueError(f"DINO towers run in fp32 (as the references on a CPU), got precision {precision!r}")
    arch = DINO_ARCHS[spec.arch]
    if image_size is not None and image_size % arch.patch:
        raise ValueError(f"image_size {image_size} is not a multiple of {spec.arch}'s patch ({arch.patch} px)")
    with seeded(0):
        model = DinoViT(arch)
        for p in model.parameters():  # random weights of a sensible scale (tests, benchmarks)
            if p.ndim > 1:  # normal, tails folded into 2 sigma: the same values on every torch release
                p.data.copy_(torch.fmod(torch.randn(p.shape), 2.0) * 0.02)  # (trunc_normal_'s change)
    if weights_path is not None:
        load_checked(model, hub_state_dict(safe_load_state_dict(Path(weights_path))), Path(weights_path))
    return DinoEncoder(model, device, batch_size, image_size)
