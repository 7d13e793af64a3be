"""CLIP image/text encoders via open_clip (default ViT-B-16-plus-240, laion400m_e32)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from PIL import Image

from ..config import ModelSpec
from ..weights import WeightsError, load_checked, safe_load_state_dict
from ._common import autocast, batches, quiet_logging, resize_batch, seeded

TINY_CONFIG = Path(__file__).parent / "configs" / "zsad-tiny-clip.json"
CLIP_ARCHS = {"tiny": "zsad-tiny-clip"}  # anything else is an open_clip model name


class ClipEncoder:
    """Normalised CLIP embeddings of tiles and prompts.

    Tiles are resized straight to the model's square input (bicubic, as open_clip's
    preprocessing; tiles are square so its centre crop would be a no-op) and normalised with
    the model's mean/std.
    """

    def __init__(self, model: torch.nn.Module, device: str = "cpu", batch_size: int = 16, precision: str = "fp32"):
        self.model = model.eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
        self.mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
        self.std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.tokenizer = open_clip.tokenizer.tokenize
        self.weights_sha256 = "random"

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    @torch.inference_mode()
    def encode_images(self, tiles: Sequence[np.ndarray]) -> np.ndarray:
        """(h, w, 3) uint8 crops -> (T, D) float32 unit-norm embeddings."""
        return self._encode(tiles)

    def _encode(self, tiles: Sequence[np.ndarray], after_batch: Callable[[], None] | None = None) -> np.ndarray:
        """The embedding loop; ``after_batch()`` runs after each batch's forward pass (where forward
        hooks have seen that batch)."""
        out = []
        for sl in batches(len(tiles), self.batch_size):
            x = resize_batch(tiles[sl], self.image_size, Image.BICUBIC, self.mean, self.std).to(self.device)
            with autocast(self.device, self.precision):
                emb = self.model.encode_image(x)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
            if after_batch is not None:
                after_batch()
        return torch.cat(out).numpy() if out else np.zeros((0, self.embed_dim), np.float32)

    @torch.inference_mode()
    def encode_images_and_patches(self, tiles: Sequence[np.ndarray], layers: Sequence[int]
                                  ) -> tuple[np.ndarray, np.ndarray]:
        """Tile embeddings and, from the same forward pass, the patch tokens after the residual
        blocks ``layers`` (0-based; the class token dropped).

        Returns:
            ``emb_td`` (T, D) float32 unit-norm, as ``encode_images``; ``patches_tlyxc``
            (T, L, gy, gx, C) float16 (C = the vision width, 896 for ViT-B-16-plus-240).
        """
        layers = self.resolve_layers(layers)
        gy, gx = self.grid_size
        emb, kept = self._encode_collecting(tiles, layers)
        patches = [t[:, :, t.shape[2] - gy * gx:] for t in kept]  # the class (and any register) tokens dropped
        patches = [t.reshape(t.shape[0], len(layers), gy, gx, -1) for t in patches]
        return emb, np.concatenate([np.zeros((0, len(layers), gy, gx, self.width), np.float16), *patches])

    @torch.inference_mode()
    def encode_whole(self, images: Sequence[np.ndarray], layers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """MuSc's features of whole images: each resized to the model's input square (bicubic,
        PIL, as MuSc's transform), normalised with the model's mean/std, one forward pass.

        Returns:
            ``tokens_nltc`` (N, L, 1 + g*g, C) float16: the residual stream after the blocks
            ``layers`` (0-based; None: ``default_patch_layers``), the class token first; ``class_nd`` (N, D) float32: the
            normalised image embedding (RsCIN's class token).
        """
        layers = self.resolve_layers(layers)
        cls, kept = self._encode_collecting(images, layers)
        t = 1 + self.grid_size[0] * self.grid_size[1]
        return np.concatenate([np.zeros((0, len(layers), t, self.width), np.float16), *kept]), cls

    def _encode_collecting(self, images: Sequence[np.ndarray], layers: tuple[int, ...]
                           ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``_encode`` with the residual stream after the blocks ``layers`` kept: the embeddings
        and, per batch, its (B, L, T, C) float16 tokens as forward hooks saw them."""
        blocks, seen, kept = self.model.visual.transformer.resblocks, [], []

        def collect() -> None:
            tok = torch.stack([o if self.model.visual.transformer.batch_first else o.transpose(0, 1) for o in seen],
                              dim=1)
            kept.append(tok.to(torch.float16).cpu().numpy())
            seen.clear()

        hooks = [blocks[i].register_forward_hook(lambda _m, _i, out: seen.append(out)) for i in layers]
        try:
            emb = self._encode(images, collect)
        finally:
            for h in hooks:
                h.remove()
        return emb, kept

    def resolve_layers(self, layers: Sequence[int] | None) -> tuple[int, ...]:
        """``layers`` checked against this tower (None = ``default_patch_layers``)."""
        return check_layers(layers, len(self.model.visual.transformer.resblocks))

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.model.visual.grid_size
        return int(g[0]), int(g[1])

    @property
    def width(self) -> int:
        return int(self.model.visual.transformer.width)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], trim: bool = True) -> np.ndarray:
        """Prompts -> (P, D) float32 unit-norm embeddings.

        With ``trim`` the token sequences are cut after the longest prompt's end token instead of
        running all 77 positions: the text tower's attention is causal and it pools at the end
        token, so the padding after it never reaches the output (same embeddings up to float
        rounding, ~4x less compute for WinCLIP's prompts).
        """
        out = []
        for sl in batches(len(texts), 256):
            tokens = self.tokenizer(list(texts[sl])).to(self.device)
            emb = self._encode_trimmed(tokens) if trim and _trimmable(self.model) else self.model.encode_text(tokens)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    def _encode_trimmed(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's ``CLIP.encode_text`` on the first n positions (n = longest prompt + 1)."""
        m = self.model
        n = int((tokens != 0).sum(dim=1).max())
        tokens = tokens[:, :n]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:n].to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:n, :n]))
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        return m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])


def default_patch_layers(depth: int) -> tuple[int, ...]:
    """The last block of each quarter of the vision tower, 0-based (MuSc and APRIL-GAN take
    blocks 6/12/18/24 of ViT-L/14; for ViT-B-16-plus-240's 12 blocks: 2, 5, 8, 11).

    Example:
        >>> default_patch_layers(12), default_patch_layers(2)
        ((2, 5, 8, 11), (0, 1))
    """
    return tuple(dict.fromkeys(max(0, depth * q // 4 - 1) for q in (1, 2, 3, 4)))


def check_layers(layers: Sequence[int] | None, depth: int) -> tuple[int, ...]:
    """``layers`` (None = ``default_patch_layers``) checked against the tower's ``depth``."""
    if layers is None:
        return default_patch_layers(depth)
    layers = tuple(layers)
    bad = [i for i in layers if not isinstance(i, int) or not 0 <= i < depth]
    if not layers or bad:
        raise ValueError(f"patch layers must be block indices in 0..{depth - 1} of this CLIP vision tower, "
                         f"got {list(layers)}")
    return layers


def _trimmable(model: torch.nn.Module) -> bool:
    """A plain open_clip ``CLIP`` with a causal text tower pooled at the end token."""
    return (all(hasattr(model, a) for a in ("token_embedding", "positional_embedding", "attn_mask", "ln_final"))
            and model.attn_mask is not None and getattr(model, "text_pool_type", "argmax") in ("argmax", "eos"))


def resize_position_embedding(pos_td: torch.Tensor, grid: int) -> torch.Tensor:
    """(1 + G*G, C) position embeddings (class token first) -> (1 + grid*grid, C): bicubic,
    ``align_corners=False``, no antialiasing, in float32, as MuSc's bundled open_clip
    (``resize_pos_embed``; today's open_clip antialiases, a different kernel).

    Example:
        >>> resize_position_embedding(torch.ones(1 + 4, 3), 3).shape
        torch.Size([10, 3])
    """
    old = math.isqrt(pos_td.shape[0] - 1)
    if old == grid:
        return pos_td
    img = pos_td[1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False)
    img = img.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos_td.dtype)
    return torch.cat([pos_td[:1], img])


def musc_quick_gelu(spec: ModelSpec, image_size: int) -> bool:
    """Whether MuSc's code runs ``spec`` with QuickGELU at ``image_size``: only OpenAI weights at
    their native size (its factory loads those whole); at another size it builds the tower from
    the JSON config (``CLIP(**model_cfg)``), whose activation is ``nn.GELU``."""
    if spec.pretrained != "openai":
        return False
    native = open_clip.get_model_config(CLIP_ARCHS.get(spec.arch, spec.arch))["vision_cfg"]["image_size"]
    return int(native) == int(image_size)


def build_clip(spec: ModelSpec, weights_path: Path | None = None, device: str = "cpu",
               batch_size: int = 16, precision: str = "fp32", image_size: int | None = None) -> ClipEncoder:
    """Build an open_clip model for ``spec.arch``; random weights when ``weights_path`` is None.
    ``image_size``: MuSc's tower at that input size (position embeddings resized with
    ``resize_position_embedding``; QuickGELU as ``musc_quick_gelu`` says)."""
    if spec.arch == "tiny" and "zsad-tiny-clip" not in open_clip.list_models():
        open_clip.add_model_config(TINY_CONFIG)
    name = CLIP_ARCHS.get(spec.arch, spec.arch)
    if name not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {spec.arch!r}; use 'tiny' or an open_clip model name "
                         f"such as 'ViT-B-16-plus-240'")
    sized = {} if image_size is None else {"force_image_size": image_size,
                                           "force_quick_gelu": musc_quick_gelu(spec, image_size)}
    with seeded(0), quiet_logging():  # open_clip warns that no weights were loaded: we load them below
        model = open_clip.create_model(name, pretrained=None, device="cpu", **sized)
    if weights_path is not None:
        sd = safe_load_state_dict(Path(weights_path))
        if "positional_embedding" not in sd:
            raise WeightsError(f"{weights_path}: not an open_clip CLIP state dict (no 'positional_embedding')")
        if image_size is not None and "visual.positional_embedding" in sd:
            sd["visual.positional_embedding"] = resize_position_embedding(sd["visual.positional_embedding"],
                                                                          int(model.visual.grid_size[0]))
        load_checked(model, sd, Path(weights_path))
    return ClipEncoder(model, device, batch_size, precision)
