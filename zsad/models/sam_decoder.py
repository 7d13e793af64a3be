"""SAM's mask decoder with the first two-way layer's image side computed once per image.

For point prompts without a mask input, every prompt of a batch sees the same image tokens
``image_embeddings + no_mask_embed`` and the same positional encoding until the first layer's
image-to-token attention updates them. Stock's ``MaskDecoder`` copies them per prompt
(``repeat_interleave``) and projects each copy: in the first ``TwoWayAttentionBlock`` the
token-to-image attention's ``k_proj(keys + key_pe)`` and ``v_proj(keys)`` and the image-to-token
attention's ``q_proj(keys + key_pe)``, each (h*w, C) x (C, C/2) per prompt. Here they run once on
one copy and are broadcast; everything else is stock's code in stock's order
(``segment_anything/modeling/mask_decoder.py`` and ``transformer.py``).

The arithmetic of each output element is the same, but a projection of h*w rows instead of
B*h*w rows, and a broadcast instead of a batched matmul, may take other BLAS kernels: equal up
to float rounding (``tests/test_sam_amg.py`` states the tolerance), not bit for bit.
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import Attention
from torch import Tensor, nn


def _heads(x: Tensor, n: int) -> Tensor:
    """(B, N, C) -> (B, n, N, C/n), as ``Attention._separate_heads``."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _attend(a: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``Attention.forward`` after its three projections (``q``, ``k``, ``v`` already projected;
    a batch dimension of 1 broadcasts)."""
    q, k, v = _heads(q, a.num_heads), _heads(k, a.num_heads), _heads(v, a.num_heads)
    attn = q @ k.permute(0, 1, 3, 2)
    attn = torch.softmax(attn / math.sqrt(q.shape[-1]), dim=-1)
    out = attn @ v
    b, n_heads, n_tokens, c = out.shape
    return a.out_proj(out.transpose(1, 2).reshape(b, n_tokens, n_heads * c))


class SharedImageSideDecoder(nn.Module):
    """``MaskDecoder.forward`` for point prompts with the shared image side (module docstring).
    A dense prompt that differs between prompts (a mask input) goes to the stock decoder."""

    def __init__(self, decoder: MaskDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, image_embeddings: Tensor, image_pe: Tensor, sparse_prompt_embeddings: Tensor,
                dense_prompt_embeddings: Tensor, multimask_output: bool) -> tuple[Tensor, Tensor]:
        d = self.decoder
        if dense_prompt_embeddings.shape[0] > 1 and dense_prompt_embeddings.stride(0) != 0:
            return d(image_embeddings=image_embeddings, image_pe=image_pe,
                     sparse_prompt_embeddings=sparse_prompt_embeddings,
                     dense_prompt_embeddings=dense_prompt_embeddings, multimask_output=multimask_output)
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings), dim=1)
        src = image_embeddings + dense_prompt_embeddings[:1]
        _, c, h, w = src.shape
        queries, keys = self._transformer(src, image_pe, tokens)
        hs, src = queries, keys
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1: (1 + d.num_mask_tokens), :]
        src = src.transpose(1, 2).view(b, c, h, w)
        upscaled = d.output_upscaling(src)
        hyper_in = torch.stack([d.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                                for i in range(d.num_mask_tokens)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = d.iou_prediction_head(iou_token_out)
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, mask_slice, :, :], iou_pred[:, mask_slice]

    def _transformer(self, src_1chw: Tensor, pe_1chw: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``TwoWayTransformer.forward`` with its first block's image side shared."""
        t = self.decoder.transformer
        keys = src_1chw.flatten(2).permute(0, 2, 1)
        key_pe = pe_1chw.flatten(2).permute(0, 2, 1)
        first, *rest = t.layers
        queries, keys = self._first_block(first, tokens, keys, key_pe)
        for layer in rest:
            queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
        attn_out = t.final_attn_token_to_image(q=queries + tokens, k=keys + key_pe, v=keys)
        return t.norm_final_attn(queries + attn_out), keys

    @staticmethod
    def _first_block(blk, query_pe: Tensor, keys_1: Tensor, key_pe: Tensor) -> tuple[Tensor, Tensor]:
        """``TwoWayAttentionBlock.forward`` (``skip_first_layer_pe``) with ``keys_1`` (1, h*w, C)."""
        if not blk.skip_first_layer_pe:
            raise ValueError("the shared image side needs SAM's first two-way block (skip_first_layer_pe=True)")
        queries = blk.norm1(blk.self_attn(q=query_pe, k=query_pe, v=query_pe))
        a = blk.cross_attn_token_to_image
        keyed = keys_1 + key_pe
        attn_out = _attend(a, a.q_proj(queries + query_pe), a.k_proj(keyed), a.v_proj(keys_1))
        queries = blk.norm2(queries + attn_out)
        queries = blk.norm3(queries + blk.mlp(queries))
        a = blk.cross_attn_image_to_token
        q = queries + query_pe
        attn_out = _attend(a, a.q_proj(keyed), a.k_proj(q), a.v_proj(queries))
        return queries, blk.norm4(keys_1 + attn_out)
