"""CLIP image/text encoders via open_clip (default ViT-B-16-plus-240, laion400m_e32)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import open_clip
import torch
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
        blocks = self.model.visual.transformer.resblocks
        layers = self.resolve_layers(layers)
        gy, gx = self.grid_size
        seen: list[torch.Tensor] = []
        patches = [np.zeros((0, len(layers), gy, gx, self.width), np.float16)]

        def collect() -> None:  # the batch's tokens, as the hooks saw them
            tok = torch.stack([o if self.model.visual.transformer.batch_first else o.transpose(0, 1)
                               for o in seen], dim=1)  # (B, L, N, C)
            tok = tok[:, :, tok.shape[2] - gy * gx:]  # drop the class (and any register) tokens
            patches.append(tok.reshape(tok.shape[0], len(layers), gy, gx, -1).to(torch.float16).cpu().numpy())
            seen.clear()

        hooks = [blocks[i].register_forward_hook(lambda _m, _i, out: seen.append(out)) for i in layers]
        try:
            emb = self._encode(tiles, collect)
        finally:
            for h in hooks:
                h.remove()
        return emb, np.concatenate(patches)

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


def build_clip(spec: ModelSpec, weights_path: Path | None = None, device: str = "cpu",
               batch_size: int = 16, precision: str = "fp32") -> ClipEncoder:
    """Build an open_clip model for ``spec.arch``; random weights when ``weights_path`` is None."""
    if spec.arch == "tiny" and "zsad-tiny-clip" not in open_clip.list_models():
        open_clip.add_model_config(TINY_CONFIG)
    name = CLIP_ARCHS.get(spec.arch, spec.arch)
    if name not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {spec.arch!r}; use 'tiny' or an open_clip model name "
                         f"such as 'ViT-B-16-plus-240'")
    with seeded(0), quiet_logging():  # open_clip warns that no weights were loaded: we load them below
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    if weights_path is not None:
        sd = safe_load_state_dict(Path(weights_path))
        if "positional_embedding" not in sd:
            raise WeightsError(f"{weights_path}: not an open_clip CLIP state dict (no 'positional_embedding')")
        load_checked(model, sd, Path(weights_path))
    return ClipEncoder(model, device, batch_size, precision)
