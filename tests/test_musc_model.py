"""MuSc's whole-image features: the position-embedding resize (brute-force bicubic), the GELU
rule of MuSc's factory, and the token stage's layout against a plain forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zsad.config import ModelSpec
from zsad.models.clip import build_clip, musc_quick_gelu, resize_position_embedding


def cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights of the 4 neighbours at offsets -1, 0, 1, 2 (a = -0.75: PyTorch's
    non-antialiased bicubic, which MuSc's resize_pos_embed calls)."""
    def k(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
        if x < 2:
            return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
        return 0.0
    return [k(t + 1), k(t), k(1 - t), k(2 - t)]


def brute_resize(grid_hwc: np.ndarray, out: int) -> np.ndarray:
    """Half-pixel centres (align_corners=False), borders clamped, separable: by loops."""
    n = grid_hwc.shape[0]
    scale = n / out

    def axis(values: np.ndarray) -> np.ndarray:  # (n, ...) -> (out, ...)
        res = np.zeros((out,) + values.shape[1:])
        for i in range(out):
            src = (i + 0.5) * scale - 0.5
            f = math.floor(src)
            for w, j in zip(cubic_weights(src - f), range(f - 1, f + 3)):
                res[i] += w * values[min(max(j, 0), n - 1)]
        return res

    return axis(axis(grid_hwc).transpose(1, 0, 2)).transpose(1, 0, 2)


def test_position_embeddings_resize_as_musc_does():
    rng = np.random.default_rng(0)
    pos = torch.tensor(rng.normal(size=(1 + 3 * 3, 4)), dtype=torch.float32)
    out = resize_position_embedding(pos, 5)
    assert torch.equal(out[0], pos[0])  # the class token's embedding is kept
    want = brute_resize(pos[1:].numpy().reshape(3, 3, 4).astype(np.float64), 5).reshape(25, 4)
    np.testing.assert_allclose(out[1:].numpy(), want, rtol=0, atol=1e-5)
    antialiased = F.interpolate(pos[1:].reshape(1, 3, 3, 4).permute(0, 3, 1, 2), size=(5, 5), mode="bicubic",
                                antialias=True, align_corners=False).permute(0, 2, 3, 1).reshape(25, 4)
    assert not torch.allclose(antialiased, out[1:], atol=1e-3)  # today's open_clip default: another kernel
    assert resize_position_embedding(pos, 3) is pos


def test_muscs_factory_runs_openai_weights_with_gelu_away_from_their_size():
    l14 = ModelSpec("clip", "ViT-L-14-336", "openai")
    assert musc_quick_gelu(l14, 336) and not musc_quick_gelu(l14, 518)
    assert not musc_quick_gelu(ModelSpec("clip", "ViT-B-16-plus-240", "laion400m_e32"), 240)


def test_whole_image_tokens_are_the_residual_stream_with_the_class_token_first():
    enc = build_clip(ModelSpec("clip", "tiny"), image_size=96)
    assert enc.grid_size == (6, 6) and enc.model.visual.positional_embedding.shape[0] == 37
    images = [np.random.default_rng(i).integers(0, 255, (70, 50, 3), dtype=np.uint8) for i in range(3)]
    tokens, cls = enc.encode_whole(images, [0, 1])
    assert tokens.shape == (3, 2, 37, 32) and tokens.dtype == np.float16 and cls.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(cls, enc.encode_images(images), atol=1e-6)  # the normalised image embedding
    visual = enc.model.visual
    from zsad.models._common import resize_batch
    from PIL import Image
    x = resize_batch(images, 96, Image.BICUBIC, enc.mean, enc.std)
    with torch.inference_mode():
        h = visual.conv1(x).flatten(2).transpose(1, 2)
        h = torch.cat([visual.class_embedding.expand(3, 1, -1), h], 1) + visual.positional_embedding
        h = visual.ln_pre(h)
        blocks = visual.transformer.resblocks
        first = blocks[0](h if visual.transformer.batch_first else h.transpose(0, 1))
        first = first if visual.transformer.batch_first else first.transpose(0, 1)
    np.testing.assert_allclose(tokens[:, 0].astype(np.float32), first.numpy(), rtol=2e-3, atol=2e-3)


def test_a_block_index_beyond_the_tower_is_refused():
    enc = build_clip(ModelSpec("clip", "tiny"), image_size=64)
    with pytest.raises(ValueError, match="block indices in 0..1"):
        enc.encode_whole([np.zeros((8, 8, 3), np.uint8)], [2])
