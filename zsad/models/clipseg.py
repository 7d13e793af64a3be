"""CLIPSeg via transformers (default CIDAS/clipseg-rd64-refined, 352 px input).

The vision encoder runs once per tile and its activations are shared by all L prompts
(``CLIPSegForImageSegmentation.forward`` would run it L times); the prompt embeddings are
computed once per prompt list. ``tests/test_models.py`` checks the result equals the plain
``forward``. Prompts are tokenised with CLIP's BPE (open_clip's copy of the same vocabulary
the CLIPSeg tokenizer uses) and an attention mask, so no tokenizer files are needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
from PIL import Image
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

from ..config import ModelSpec
from ..weights import WeightsError, load_checked, safe_load_state_dict
from ._common import autocast, batches, quiet_logging, resize_batch, seeded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The published CIDAS checkpoints use a ViT-B/16 vision tower (transformers' default is B/32,
# a third of the compute): random-weight builds must match it for honest timings.
_B16 = dict(patch_size=16)
CLIPSEG_ARCHS: dict[str, dict] = {
    "rd64-refined": dict(use_complex_transposed_convolution=True, reduce_dim=64, vision_config=_B16),
    "rd64": dict(reduce_dim=64, vision_config=_B16),
    "rd16": dict(reduce_dim=16, vision_config=_B16),
    "tiny": dict(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=32, extract_layers=[0, 1, 2], reduce_dim=16, decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    ),
}
# "tiny-352": the tiny network at CLIPSeg's real input size, for benchmarks with real-size maps
CLIPSEG_ARCHS["tiny-352"] = {**CLIPSEG_ARCHS["tiny"], "vision_config": {**CLIPSEG_ARCHS["tiny"]["vision_config"],
                                                                        "image_size": 352}}
INPUT_SIZE = {"tiny": 64}  # others: 352


def tokenize(texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP BPE ids trimmed to the longest prompt, and the attention mask: (L, n) each."""
    ids = open_clip.tokenizer.tokenize(list(texts))  # (L, 77), SOT ... EOT then zeros
    eot = ids.argmax(dim=1)  # EOT (49407) is the largest id
    n = int(eot.max()) + 1
    mask = (torch.arange(n)[None, :] <= eot[:, None]).long()
    return ids[:, :n], mask


class ClipSegMapper:
    """Per-prompt CLIPSeg probability maps of tiles."""

    def __init__(self, model: CLIPSegForImageSegmentation, input_size: int, device: str = "cpu",
                 batch_size: int = 8, mean=IMAGENET_MEAN, std=IMAGENET_STD, precision: str = "fp32"):
        self.model = model.eval().to(device)
        self.input_size = input_size
        self.device = device
        self.batch_size = batch_size
        self.mean, self.std = mean, std
        self.precision = precision
        self.weights_sha256 = "random"
        self._cond: dict[tuple[str, ...], torch.Tensor] = {}

    @torch.inference_mode()
    def prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """(L, E) conditional embeddings, computed once per prompt list and kept (they depend on
        nothing else; recomputing them cost ~0.3 s per image on a CPU)."""
        key = tuple(prompts)
        if key not in self._cond:
            ids, mask = tokenize(prompts)
            self._cond[key] = self.model.get_conditional_embeddings(
                batch_size=len(prompts), input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return self._cond[key]

    @torch.inference_mode()
    def logits(self, pixel_values: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(B, 3, s, s) tiles x (L, E) prompt embeddings -> (B, L, s, s) logits."""
        b, l = pixel_values.shape[0], cond.shape[0]
        vision = self.model.clip.vision_model(pixel_values=pixel_values, output_hidden_states=True,
                                              interpolate_pos_encoding=True)
        acts = [vision.hidden_states[i + 1].repeat_interleave(l, dim=0) for i in self.model.extract_layers]
        out = self.model.decoder(acts, cond.repeat(b, 1)).logits
        return out.reshape(b, l, *out.shape[-2:])

    def predict_logits(self, tiles: Sequence[np.ndarray], prompts: Sequence[str]) -> np.ndarray:
        """Tiles ((h, w, 3) uint8) x prompts -> (T, L, s, s) float32 logits (what is cached)."""
        cond = self.prompt_embeddings(prompts)
        out = []
        for sl in batches(len(tiles), self.batch_size):
            x = resize_batch(tiles[sl], self.input_size, Image.BILINEAR, self.mean, self.std).to(self.device)
            with autocast(self.device, self.precision):
                out.append(self.logits(x, cond).float().cpu())
        if not out:
            return np.zeros((0, len(prompts), self.input_size, self.input_size), np.float32)
        return torch.cat(out).numpy()

    def predict(self, tiles: Sequence[np.ndarray], prompts: Sequence[str]) -> np.ndarray:
        """Tiles ((h, w, 3) uint8) x prompts -> (T, L, s, s) float32 sigmoid probabilities."""
        return torch.sigmoid(torch.from_numpy(self.predict_logits(tiles, prompts))).numpy()


def _config_for(spec: ModelSpec, weights_path: Path | None) -> CLIPSegConfig:
    if weights_path is not None:
        cfg_file = Path(weights_path).parent / "config.json"
        if not cfg_file.is_file():
            raise WeightsError(f"{weights_path}: CLIPSeg weights need their config.json beside them "
                               f"(looked for {cfg_file}); copy the whole Hugging Face snapshot folder")
        return CLIPSegConfig(**json.loads(cfg_file.read_text()))
    if spec.arch not in CLIPSEG_ARCHS:
        raise ValueError(f"unknown CLIPSeg architecture {spec.arch!r}; known: {sorted(CLIPSEG_ARCHS)}")
    return CLIPSegConfig(**CLIPSEG_ARCHS[spec.arch])


def build_clipseg(spec: ModelSpec, weights_path: Path | None = None, device: str = "cpu",
                  batch_size: int = 8, precision: str = "fp32") -> ClipSegMapper:
    """Build CLIPSeg for ``spec.arch``; random weights when ``weights_path`` is None."""
    config = _config_for(spec, weights_path)
    with seeded(0), quiet_logging():
        model = CLIPSegForImageSegmentation(config)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if weights_path is not None:
        path = Path(weights_path)
        load_checked(model, safe_load_state_dict(path), path)
        pre = path.parent / "preprocessor_config.json"
        if pre.is_file():
            pc = json.loads(pre.read_text())
            mean, std = tuple(pc.get("image_mean", mean)), tuple(pc.get("image_std", std))
    return ClipSegMapper(model, INPUT_SIZE.get(spec.arch, 352), device, batch_size, mean, std, precision)
