"""Tiny model wrappers: shapes, weights loading, sha256 checks, refusal of unsafe pickles."""

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from zsad.config import ModelSpec
from zsad.models import build_clip, build_clipseg, build_isnet, build_sam, load_model
from zsad.models.clipseg import tokenize
from zsad.models.isnet import ISNetDIS
from zsad.models.sam import make_sam
from zsad.weights import WeightsError, resolve_weights, safe_load_state_dict

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 255, (96, 128, 3), dtype=np.uint8)


def test_clip_tiny_shapes(tiny_models):
    emb = tiny_models.clip.encode_images([IMG[:50, :50], IMG[:80, :80]])
    assert emb.shape == (2, 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert tiny_models.clip.encode_texts(["a photo of a pill.", "a damaged pill"]).shape == (2, 32)
    assert tiny_models.clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)


def test_clipseg_tiny_shapes_and_shared_vision_equals_forward(tiny_models):
    seg = tiny_models.clipseg
    prompts = ["a scratch", "a dent", "an anomaly"]
    maps = seg.predict([IMG[:60, :60], IMG[10:90, 10:90]], prompts)
    assert maps.shape == (2, 3, 64, 64) and 0 <= maps.min() and maps.max() <= 1
    ids, mask = tokenize(prompts)
    from PIL import Image
    from zsad.models._common import resize_batch
    x = resize_batch([IMG[:60, :60], IMG[10:90, 10:90]], 64, Image.BILINEAR, seg.mean, seg.std)
    with torch.no_grad():
        ref = seg.model(input_ids=ids.repeat(2, 1), attention_mask=mask.repeat(2, 1),
                        pixel_values=x.repeat_interleave(3, 0)).logits
    assert np.allclose(torch.sigmoid(ref).reshape(2, 3, 64, 64).numpy(), maps, atol=1e-5)


def test_trimmed_text_tokens_give_the_same_embeddings(tiny_models):
    from zsad.prompts import build_prompt_set
    texts = build_prompt_set("pill").texts  # 882 prompts; the longest is far below 77 tokens
    full, trimmed = (tiny_models.clip.encode_texts(texts, trim=t) for t in (False, True))
    assert np.abs(full - trimmed).max() < 1e-6 and (full * trimmed).sum(1).min() > 1 - 1e-6
    short = tiny_models.clip.encode_texts(["a pill"])  # trimmed to its own length in a batch of one
    assert np.abs(short - tiny_models.clip.encode_texts(["a pill"], trim=False)).max() < 1e-6


def test_clipseg_prompt_embeddings_are_kept_and_the_published_tower_is_b16(tiny_models):
    from zsad.models.clipseg import _config_for
    seg = tiny_models.clipseg
    prompts = ["a scratch", "a dent"]
    first = seg.prompt_embeddings(prompts)
    assert seg.prompt_embeddings(list(prompts)) is first  # computed once per prompt list
    assert seg.prompt_embeddings(["a dent"]) is not first
    cfg = _config_for(ModelSpec("clipseg", "rd64-refined"), None)
    assert cfg.vision_config.patch_size == 16 and cfg.reduce_dim == 64 and cfg.use_complex_transposed_convolution


def test_sam_tiny_masks(tiny_models):
    """Masks sorted by decreasing area, each box the exclusive-end extent of its mask's pixels."""
    out = tiny_models.sam.generate(IMG)
    assert out.masks_nhw.dtype == bool and out.masks_nhw.shape[1:] == (96, 128)
    assert out.boxes_xyxy.shape == (out.masks_nhw.shape[0], 4)
    areas = out.masks_nhw.reshape(len(out.masks_nhw), -1).sum(1)
    assert (np.diff(areas) <= 0).all()
    for mask, box in zip(out.masks_nhw, out.boxes_xyxy):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_isnet_tiny_map(tiny_models):
    m = tiny_models.isnet.predict(IMG)
    assert m.shape == (96, 128) and m.dtype == np.uint8 and m.max() == 255 and m.min() == 0


def test_isnet_full_size_matches_published_layout():
    sd = ISNetDIS().state_dict()
    # shapes from the published constructor table: RSU7(64,32,64) ... RSU7(128,16,64)
    assert sd["stage2.rebnconvin.conv_s1.weight"].shape == (128, 64, 3, 3)
    assert sd["stage4d.rebnconv1d.conv_s1.weight"].shape == (256, 256, 3, 3)
    assert sd["conv_in.weight"].shape == (64, 3, 3, 3)
    assert sd["stage1.rebnconv7.conv_s1.weight"].shape == (32, 32, 3, 3)
    assert sd["stage5d.rebnconvin.conv_s1.weight"].shape == (512, 1024, 3, 3)
    assert sd["stage1d.rebnconv1d.conv_s1.weight"].shape == (64, 32, 3, 3)
    assert sd["side6.weight"].shape == (1, 512, 3, 3)
    assert "stage5.rebnconv4.conv_s1.weight" in sd and "stage5.rebnconv5.conv_s1.weight" not in sd


def test_sam_keys_match_segment_anything_registry():
    from segment_anything import sam_model_registry
    ours = make_sam("vit_b").state_dict()
    theirs = sam_model_registry["vit_b"]().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("family, builder", [("isnet", build_isnet), ("sam", build_sam), ("clip", build_clip)])
def test_weights_round_trip(tmp_path, family, builder):
    model = builder(ModelSpec(family, "tiny"))
    net = {"isnet": lambda m: m.net, "sam": lambda m: m.sam, "clip": lambda m: m.model}[family](model)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    loaded = {"isnet": lambda m: m.net, "sam": lambda m: m.sam, "clip": lambda m: m.model}[family](
        builder(ModelSpec(family, "tiny"), path))
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_clipseg_loads_snapshot_folder_with_safetensors(tmp_path):
    from safetensors.torch import save_file
    seg = build_clipseg(ModelSpec("clipseg", "tiny"))
    seg.model.config.to_json_file(tmp_path / "config.json")
    sd = {k: v.contiguous().clone() for k, v in seg.model.state_dict().items()}
    save_file(sd, tmp_path / "model.safetensors")
    again = build_clipseg(ModelSpec("clipseg", "rd64-refined"), tmp_path / "model.safetensors")
    assert again.model.config.projection_dim == 32  # the snapshot's config, not rd64-refined's
    want = seg.model.state_dict()
    got = again.model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_wrong_architecture_file_is_named(tmp_path):
    path = tmp_path / "isnet.pth"
    torch.save(build_isnet(ModelSpec("isnet", "tiny")).net.state_dict(), path)
    with pytest.raises(WeightsError, match="isnet.pth"):
        build_isnet(ModelSpec("isnet", "isnet"), path)


def test_wrong_sha256_fails_clearly(tmp_path):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=r"does not start with 01ec64.*fetch it again"):
        resolve_weights("sam/vit_b/sa-1b", str(path))


def test_matching_sha256_prefix_accepted(tmp_path, monkeypatch):
    from zsad import weights
    path = tmp_path / "w.pth"
    torch.save({"x": torch.zeros(1)}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    wf = weights.WeightsFile("isnet/test/x", "w.pth", digest, digest[:6], "https://example.invalid")
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, wf.key, wf)
    assert resolve_weights(wf.key, str(path)) == (path, digest)


def test_missing_weights_error_names_file_places_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSAD_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError) as err:
        load_model(ModelSpec("sam", "vit_h", "sa-1b"))
    msg = str(err.value)
    assert "sam_vit_h_4b8939.pth" in msg and str(tmp_path / "none") in msg and "dl.fbaipublicfiles.com" in msg
    assert "never downloads" in msg


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ.get("ZSAD_EVIL_MARK", "/tmp/zsad-evil-mark"),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    mark = tmp_path / "ran"
    monkeypatch.setenv("ZSAD_EVIL_MARK", str(mark))
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Evil()}, f)
    with pytest.raises(WeightsError, match="weights_only=True"):
        safe_load_state_dict(path)
    assert not mark.exists()


def test_truncated_safetensors_is_a_clear_weights_error(tmp_path):
    import torch
    from safetensors.torch import save_file
    from zsad.weights import WeightsError, safe_load_state_dict
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(path))
    path.write_bytes(path.read_bytes()[:100])  # an interrupted download
    with pytest.raises(WeightsError, match="model.safetensors: cannot be loaded as plain tensors"):
        safe_load_state_dict(path)


TINY_DIGESTS = {  # sha256 of each tiny model's state dict (names and float32 values), first 16 hex digits
    ("isnet", "tiny"): "b6ff0d8cb0cd2f15", ("sam", "tiny"): "1e8dafa40e42f173", ("clip", "tiny"): "dd9e0a5caac76e7b",
    ("clipseg", "tiny"): "30a2959370e23b98", ("dino", "tiny-dinov2"): "10af0ff833d5bde7",
    ("dino", "tiny-dino"): "29ff7b376770821b"}


def _state_digest(model) -> str:
    modules = [model] if isinstance(model, torch.nn.Module) else [
        v for v in vars(model).values() if isinstance(v, torch.nn.Module)]
    h = hashlib.sha256()
    for module in modules:
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("family,arch", sorted(TINY_DIGESTS))
def test_tiny_random_weights_are_the_same_values_on_every_torch_release(family, arch):
    """The tests' and the demo's random weights are drawn from a seed by operations whose values
    torch keeps across releases (the same digests on torch 2.9.1 and 2.14.1; the tiny DINO's
    ``trunc_normal_`` did not, and is replaced). A release that changes them changes every demo
    figure: this fails first."""
    assert _state_digest(load_model(ModelSpec(family, arch))) == TINY_DIGESTS[(family, arch)]
