"""IS-Net (Qin et al., ECCV 2022, "Highly Accurate Dichotomous Image Segmentation").

The architecture is in no package; this is written from the paper's description of the
U^2-Net-style encoder/decoder of residual U-blocks (RSU). Module and parameter names follow
the published ``isnet-general-use.pth`` state dict (``conv_in``, ``stage1``..``stage6``,
``stage5d``..``stage1d``, ``side1``..``side6``, ``rebnconv*``/``conv_s1``/``bn_s1``) so the
real weights load strictly. ``base`` scales every width: 64 is the published model.

Inference follows the authors' script: resize to 1024 px (bilinear), scale to [0, 1],
subtract 0.5, take the first side output (sigmoid), resize back, min-max normalise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelSpec
from ..weights import load_checked, safe_load_state_dict
from ._common import check_image, seeded


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    """3x3 (dilated) conv, batch norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of ``height`` levels; ``dilated`` = the RSU-4F variant (no pooling).

    Encoder convs ``rebnconv1..rebnconv{height}``, decoder ``rebnconv{height-1}d..rebnconv1d``.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int, dilated: bool = False):
        super().__init__()
        self.height, self.dilated = height, dilated
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        for i in range(2, height + 1):
            rate = 2 ** (i - 1) if dilated else (2 if i == height else 1)
            setattr(self, f"rebnconv{i}", REBNCONV(mid_ch, mid_ch, rate))
        for i in range(height - 1, 0, -1):
            rate = 2 ** (i - 1) if dilated else 1
            setattr(self, f"rebnconv{i}d", REBNCONV(2 * mid_ch, out_ch if i == 1 else mid_ch, rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips, hx = [], hxin
        for i in range(1, self.height):
            hx = getattr(self, f"rebnconv{i}")(hx)
            skips.append(hx)
            if not self.dilated and i < self.height - 1:
                hx = F.max_pool2d(hx, 2, stride=2, ceil_mode=True)
        hx = getattr(self, f"rebnconv{self.height}")(hx)
        for i in range(self.height - 1, 0, -1):
            hx = getattr(self, f"rebnconv{i}d")(torch.cat((hx, skips[i - 1]), 1))
            if not self.dilated and i > 1:
                hx = _up(hx, skips[i - 2])
        return hx + hxin


class ISNetDIS(nn.Module):
    """IS-Net segmentation network; ``forward`` returns the six side outputs (sigmoid)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 1, base: int = 64):
        super().__init__()
        b = base
        self.conv_in = nn.Conv2d(in_ch, b, 3, stride=2, padding=1)
        self.stage1 = RSU(7, b, b // 2, b)
        self.stage2 = RSU(6, b, b // 2, 2 * b)
        self.stage3 = RSU(5, 2 * b, b, 4 * b)
        self.stage4 = RSU(4, 4 * b, 2 * b, 8 * b)
        self.stage5 = RSU(4, 8 * b, 4 * b, 8 * b, dilated=True)
        self.stage6 = RSU(4, 8 * b, 4 * b, 8 * b, dilated=True)
        self.stage5d = RSU(4, 16 * b, 4 * b, 8 * b, dilated=True)
        self.stage4d = RSU(4, 16 * b, 2 * b, 4 * b)
        self.stage3d = RSU(5, 8 * b, b, 2 * b)
        self.stage2d = RSU(6, 4 * b, b // 2, b)
        self.stage1d = RSU(7, 2 * b, b // 4, b)
        for i, ch in enumerate((b, b, 2 * b, 4 * b, 8 * b, 8 * b), start=1):
            setattr(self, f"side{i}", nn.Conv2d(ch, out_ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        enc, hx = [], self.conv_in(x)
        for i in range(1, 7):
            hx = getattr(self, f"stage{i}")(hx)
            enc.append(hx)
            if i < 6:
                hx = F.max_pool2d(hx, 2, stride=2, ceil_mode=True)
        dec = [enc[5]]
        for i in range(5, 0, -1):
            hx = getattr(self, f"stage{i}d")(torch.cat((_up(dec[-1], enc[i - 1]), enc[i - 1]), 1))
            dec.append(hx)
        feats = dec[::-1]  # hx1d .. hx5d, hx6
        return [torch.sigmoid(_up(getattr(self, f"side{i}")(f), x)) for i, f in enumerate(feats, start=1)]


ISNET_ARCHS = {"isnet": (64, 1024), "tiny": (8, 128)}  # base width, input size


class IsNetSegmenter:
    """Foreground probability of a whole image, as uint8 (0..255 = 0..1)."""

    def __init__(self, net: ISNetDIS, input_size: int, device: str = "cpu"):
        self.net = net.eval().to(device)
        self.input_size = input_size
        self.device = device
        self.weights_sha256 = "random"

    @torch.inference_mode()
    def predict(self, image_hw3: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) uint8 min-max normalised foreground probability."""
        h, w = check_image(image_hw3).shape[:2]
        x = torch.from_numpy(np.array(image_hw3)).permute(2, 0, 1)[None].float().to(self.device)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = x.to(torch.uint8).float() / 255.0 - 0.5  # the authors' script: uint8 round trip, mean .5, std 1
        d1 = F.interpolate(self.net(x)[0], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        lo, hi = d1.min(), d1.max()
        prob = (d1 - lo) / (hi - lo) if hi > lo else torch.zeros_like(d1)
        return (prob * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


def build_isnet(spec: ModelSpec, weights_path: Path | None = None, device: str = "cpu") -> IsNetSegmenter:
    """Build IS-Net for ``spec.arch``; random weights when ``weights_path`` is None."""
    if spec.arch not in ISNET_ARCHS:
        raise ValueError(f"unknown IS-Net architecture {spec.arch!r}; known: {sorted(ISNET_ARCHS)}")
    base, size = ISNET_ARCHS[spec.arch]
    with seeded(0):
        net = ISNetDIS(base=base)
    if weights_path is not None:
        load_checked(net, safe_load_state_dict(Path(weights_path)), Path(weights_path))
    return IsNetSegmenter(net, size, device)
