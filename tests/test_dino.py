"""zsad's DINO / DINOv2 towers (``zsad.models.dino_vit``, ``zsad.models.dino``) against
transformers' independent ``Dinov2Model`` / ``ViTModel``, the reference's position-embedding
interpolation written from its equation, and torchvision's preprocessing of each reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from zsad.config import ModelSpec
from zsad.models.dino import (IMAGENET_MEAN, IMAGENET_STD, anomalydino_input, build_dino, hub_state_dict,
                              resized_size)
from zsad.models.dino_vit import DINO_ARCHS, DinoViT, interpolate_position_embedding
from zsad.weights import WeightsError

transformers = pytest.importorskip("transformers")


def hf_dinov2(arch):
    cfg = transformers.Dinov2Config(hidden_size=arch.width, num_hidden_layers=arch.depth,
                                    num_attention_heads=arch.heads, mlp_ratio=4, image_size=arch.native_size,
                                    patch_size=arch.patch, layer_norm_eps=1e-6, layerscale_value=1.0,
                                    attn_implementation="eager")
    torch.manual_seed(1)
    model = transformers.Dinov2Model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def hf_vit(arch):
    cfg = transformers.ViTConfig(hidden_size=arch.width, num_hidden_layers=arch.depth, num_attention_heads=arch.heads,
                                 intermediate_size=4 * arch.width, image_size=arch.native_size, patch_size=arch.patch,
                                 qkv_bias=True, layer_norm_eps=1e-6, attn_implementation="eager")
    torch.manual_seed(2)
    model = transformers.ViTModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def ours_from(hf_model, arch):
    model = DinoViT(arch).eval()
    model.load_state_dict(hub_state_dict(hf_model.state_dict()), strict=True)
    return model


@pytest.mark.parametrize("name,make", [("tiny-dinov2", hf_dinov2), ("tiny-dino", hf_vit)])
def test_the_blocks_after_the_final_norm_equal_transformers_on_the_stored_grid(name, make):
    arch = DINO_ARCHS[name]
    hf = make(arch)
    ours = ours_from(hf, arch)
    x = torch.randn(2, 3, arch.native_size, arch.native_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = hf(pixel_values=x, output_hidden_states=True)
        got, cls = ours.normed_blocks(x, (0, 1))
        normed = [hf.layernorm(h) for h in out.hidden_states]
    for i in (0, 1):  # hidden_states[i + 1] is block i before the final norm
        np.testing.assert_allclose(got[i].numpy(), normed[i + 1].numpy(), atol=2e-5)
    np.testing.assert_allclose(cls.numpy(), out.last_hidden_state[:, 0].numpy(), atol=2e-5)


def reference_interpolation(pos, h, w, patch):
    """The reference's interpolate_pos_encoding, from its equation (scale factor (g + 0.1) / M)."""
    n = pos.shape[1] - 1
    if (h // patch) * (w // patch) == n and h == w:
        return pos
    m = int(n ** 0.5)
    grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h // patch + 0.1) / m, (w // patch + 0.1) / m), mode="bicubic")
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])], dim=1)


@pytest.mark.parametrize("h,w", [(56, 56), (84, 84), (70, 112), (112, 70), (28, 224)])
def test_position_embeddings_are_interpolated_with_the_references_offset(h, w):
    pos = torch.randn(1, 1 + 16, 8, generator=torch.Generator().manual_seed(3))
    got = interpolate_position_embedding(pos, (h // 14, w // 14), square=h == w)
    assert torch.equal(got, reference_interpolation(pos, h, w, 14))


def test_off_the_stored_grid_transformers_tokens_differ_and_ours_follow_the_reference():
    arch = DINO_ARCHS["tiny-dinov2"]
    hf = hf_dinov2(arch)
    ours = ours_from(hf, arch)
    x = torch.randn(1, 3, 84, 84, generator=torch.Generator().manual_seed(4))  # 6 x 6 patches, stored 4 x 4
    with torch.no_grad():
        theirs = hf.layernorm(hf(pixel_values=x, output_hidden_states=True).hidden_states[2])
        got = ours.normed_blocks(x, (1,))[0][0]
    assert (got - theirs).abs().max() > 1e-4  # transformers resizes by size, without the 0.1 offset
    pos = interpolate_position_embedding(ours.pos_embed, (6, 6), square=True)
    assert torch.equal(pos, reference_interpolation(ours.pos_embed.detach(), 84, 84, 14))


def test_dino_v1_layer_norms_use_eps_1e_6():
    model = DinoViT(DINO_ARCHS["tiny-dino"])
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}


def test_transformers_4_names_map_to_the_references():
    width = 32
    sd = {"embeddings.cls_token": torch.zeros(1, 1, width), "embeddings.mask_token": torch.zeros(1, width),
          "embeddings.position_embeddings": torch.zeros(1, 17, width),
          "encoder.layer.0.attention.attention.query.weight": torch.full((width, width), 1.0),
          "encoder.layer.0.attention.attention.key.weight": torch.full((width, width), 2.0),
          "encoder.layer.0.attention.attention.value.weight": torch.full((width, width), 3.0),
          "encoder.layer.0.attention.output.dense.bias": torch.zeros(width),
          "encoder.layer.0.layer_scale1.lambda1": torch.ones(width), "layernorm.weight": torch.ones(width),
          "pooler.dense.weight": torch.zeros(width, width)}
    out = hub_state_dict({"dinov2." + k: v for k, v in sd.items()})
    assert out["blocks.0.attn.qkv.weight"].shape == (3 * width, width)
    assert out["blocks.0.attn.qkv.weight"][:, 0].unique().tolist() == [1.0, 2.0, 3.0]
    assert {"cls_token", "pos_embed", "mask_token", "blocks.0.ls1.gamma", "norm.weight",
            "blocks.0.attn.proj.bias"} <= set(out) and not any(k.startswith("pooler") for k in out)
    with pytest.raises(WeightsError, match="unexpected key 'text_model.x'"):
        hub_state_dict({"text_model.x": torch.zeros(1)})


def test_a_hub_checkpoint_loads_as_it_is_and_a_wrong_one_is_named(tmp_path):
    model = DinoViT(DINO_ARCHS["tiny-dinov2"])
    torch.nn.init.normal_(model.cls_token)
    torch.save(model.state_dict(), tmp_path / "hub.pth")
    enc = build_dino(ModelSpec("dino", "tiny-dinov2"), tmp_path / "hub.pth")
    assert torch.equal(enc.model.cls_token, model.cls_token)
    with pytest.raises(WeightsError, match="hub.pth: tensor shapes do not fit DinoViT"):
        build_dino(ModelSpec("dino", "tiny-dino"), tmp_path / "hub.pth")


def test_musc_preprocessing_is_torchvisions_square_bilinear_resize():
    image = np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    ref = transforms.Compose([transforms.Resize((56, 56)), transforms.CenterCrop(56), transforms.ToTensor(),
                              transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(Image.fromarray(image))
    enc = build_dino(ModelSpec("dino", "tiny-dinov2"), image_size=56)
    seen = []
    hook = enc.model.patch_embed.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    tokens, cls = enc.encode_whole([image], (1,))
    hook.remove()
    assert torch.equal(seen[0][0], ref)
    assert tokens.shape == (1, 1, 17, 32) and not tokens[:, :, 0].any()  # DINOv2: MuSc's zero class token
    with torch.no_grad():
        last = enc.model.normed_blocks(ref[None], (1,))[1]
    np.testing.assert_array_equal(cls, last.numpy())  # the normed class token, not L2-normalised
    assert abs(np.linalg.norm(cls) - 1) > 1e-3


@pytest.mark.parametrize("hw", [(100, 120), (120, 100), (64, 64), (57, 300)])
def test_anomalydino_preprocessing_is_its_resize_then_top_left_crop(hw):
    image = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    tensor = transforms.Compose([transforms.Resize(56, interpolation=transforms.InterpolationMode.BICUBIC,
                                                   antialias=True), transforms.ToTensor(),
                                 transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(Image.fromarray(image))
    h, w = tensor.shape[1:]
    assert (h, w) == resized_size(*hw, 56)
    assert torch.equal(anomalydino_input(image, 56, 14), tensor[:, :h - h % 14, :w - w % 14])
    tokens, grid = build_dino(ModelSpec("dino", "tiny-dinov2")).encode_patches(image, 56)
    assert grid == (h // 14, w // 14) and tokens.shape == (grid[0] * grid[1], 32) and tokens.dtype == np.float32


def test_a_size_off_the_patch_and_an_unknown_arch_are_refused():
    with pytest.raises(ValueError, match="not a multiple of tiny-dinov2's patch"):
        build_dino(ModelSpec("dino", "tiny-dinov2"), image_size=50)
    with pytest.raises(ValueError, match="unknown DINO architecture 'vit_g'"):
        build_dino(ModelSpec("dino", "vit_g"))
