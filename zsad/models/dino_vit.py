"""The DINO and DINOv2 vision transformers as their reference code computes them, with the
reference's parameter names (so its published checkpoints load as they are).

Mirrored operation by operation from facebookresearch/dinov2 (``dinov2/models/vision_transformer.py``,
``dinov2/layers``, ``dinov2/hub/backbones.py``, commit b8931f7) for DINOv2 and from MuSc's copy of
DINO's ``vision_transformer.py`` (xrli-U/MuSc ``models/backbone/vision_transformer.py``, commit
b76b93d) for DINO v1:

- patch embedding: a ``patch`` x ``patch`` convolution of stride ``patch``, flattened;
- position embeddings interpolated to the input's grid only when the grid differs from the
  stored one or the input is not square (``interpolate_position_embedding``): bicubic on the
  scale factor ``(g + 0.1) / M`` (the reference's offset), no antialiasing, in float32;
- each block: ``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``; LayerScale in DINOv2
  only (``gamma``); LayerNorm eps 1e-6 in both (transformers' ``ViTConfig`` default is 1e-12);
  DINOv2's attention is ``scaled_dot_product_attention`` (the reference without xFormers), DINO
  v1's ``softmax((q @ k^T) * scale) @ v``;
- a block's output "after the final norm" is ``norm(x)`` of the residual stream after that block
  (transformers' ``hidden_states[i + 1]`` is block i before the norm).

``transformers``' ``Dinov2Model`` and ``ViTModel`` are the independent cross-check in
``tests/test_dino.py`` (its interpolation sizes by output size, without the offset, so the two
differ off the stored grid; they agree on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DinoArch:
    """A DINO / DINOv2 tower: ``version`` 1 or 2, ``width``, ``depth``, ``heads``, ``patch``
    side, ``grid`` of its stored position embeddings (518 / 14 = 37 for DINOv2, 224 / 16 = 14
    for DINO)."""

    version: int
    width: int
    depth: int
    heads: int
    patch: int
    grid: int

    @property
    def native_size(self) -> int:
        return self.patch * self.grid


DINO_ARCHS: dict[str, DinoArch] = {
    "dinov2_vits14": DinoArch(2, 384, 12, 6, 14, 37),
    "dinov2_vitb14": DinoArch(2, 768, 12, 12, 14, 37),
    "dinov2_vitl14": DinoArch(2, 1024, 24, 16, 14, 37),
    "dino_vitb16": DinoArch(1, 768, 12, 12, 16, 14),
    "dino_vits16": DinoArch(1, 384, 12, 6, 16, 14),
    "tiny-dinov2": DinoArch(2, 32, 2, 2, 14, 4),  # random-weight test towers
    "tiny-dino": DinoArch(1, 32, 2, 2, 16, 4),
}


def interpolate_position_embedding(pos_1tc: torch.Tensor, grid_hw: tuple[int, int], square: bool,
                                   offset: float = 0.1) -> torch.Tensor:
    """(1, 1 + M*M, C) stored position embeddings (class first) -> (1, 1 + gh*gw, C) for an input
    of ``grid_hw`` patches, as the reference's ``interpolate_pos_encoding``: unchanged when
    ``gh * gw == M * M`` and the input is ``square`` (in pixels); else bicubic with scale factors
    ``((gh + offset) / M, (gw + offset) / M)``, no antialiasing, float32.

    Example:
        >>> pos = torch.zeros(1, 1 + 4 * 4, 2)  # stored 4 x 4 grid, 2 channels
        >>> interpolate_position_embedding(pos, (6, 3), square=False).shape
        torch.Size([1, 19, 2])
    """
    n = pos_1tc.shape[1] - 1
    gh, gw = grid_hw
    if gh * gw == n and square:
        return pos_1tc
    m = math.isqrt(n)
    if m * m != n:
        raise ValueError(f"stored position embeddings of {n} patches are not a square grid")
    pos = pos_1tc.float()
    grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + offset) / m, (gw + offset) / m), mode="bicubic",
                         antialias=False)
    if tuple(grid.shape[-2:]) != (gh, gw):
        raise ValueError(f"interpolated position grid {tuple(grid.shape[-2:])} is not the input's {gh} x {gw}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
    return torch.cat([pos[:, :1], grid], dim=1).to(pos_1tc.dtype)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, version: int):
        super().__init__()
        self.heads, self.version = heads, version
        self.scale = (width // heads) ** -0.5
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        if self.version == 2:  # dinov2/layers/attention.py, Attention.forward
            q, k, v = torch.unbind(self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads), 2)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            return self.proj(out.transpose(1, 2).contiguous().view(b, n, c))
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] @ qkv[1].transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ qkv[2]).transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, arch: DinoArch):
        super().__init__()
        self.norm1 = nn.LayerNorm(arch.width, eps=1e-6)
        self.attn = Attention(arch.width, arch.heads, arch.version)
        self.norm2 = nn.LayerNorm(arch.width, eps=1e-6)
        self.mlp = Mlp(arch.width)
        scaled = arch.version == 2
        self.ls1 = LayerScale(arch.width) if scaled else nn.Identity()
        self.ls2 = LayerScale(arch.width) if scaled else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, arch: DinoArch):
        super().__init__()
        self.proj = nn.Conv2d(3, arch.width, kernel_size=arch.patch, stride=arch.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    """A DINO / DINOv2 tower with the reference's parameter names (``cls_token``, ``pos_embed``,
    ``patch_embed.proj``, ``blocks.i.attn.qkv``, ``blocks.i.ls1.gamma``, ``norm``; DINOv2's
    ``mask_token``, unused at inference)."""

    def __init__(self, arch: DinoArch):
        super().__init__()
        self.arch = arch
        self.patch_embed = PatchEmbed(arch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + arch.grid * arch.grid, arch.width))
        if arch.version == 2:
            self.mask_token = nn.Parameter(torch.zeros(1, arch.width))
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.depth))
        self.norm = nn.LayerNorm(arch.width, eps=1e-6)

    def prepare_tokens(self, x_bchw: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, 1 + gh*gw, C): class token first, positions added."""
        _, _, h, w = x_bchw.shape
        x = self.patch_embed(x_bchw)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        grid = (h // self.arch.patch, w // self.arch.patch)
        return x + interpolate_position_embedding(self.pos_embed, grid, square=h == w)

    def normed_blocks(self, x_bchw: torch.Tensor, layers: tuple[int, ...]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The residual stream after each block of ``layers`` (0-based), after the final norm,
        (B, 1 + gh*gw, C) each with the class token first; and the last block's normed class
        token (B, C) (the reference's ``forward``: ``x_norm_clstoken`` / ``norm(x)[:, 0]``)."""
        x, out = self.prepare_tokens(x_bchw), {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in layers:
                out[i] = self.norm(x)
        last = out[len(self.blocks) - 1] if len(self.blocks) - 1 in out else self.norm(x)
        return [out[i] for i in layers], last[:, 0]
