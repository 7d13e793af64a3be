"""Realistic survivors for random-weight SAM, for benchmarks and tests only.

With random weights SAM's mask logits are noise near 0 covering the whole image: the quality
filters drop nearly every mask (or, opened, NMS keeps one), so everything that grows with the
surviving masks (upsampling and stability of the IoU survivors, boxes, NMS, the output masks,
IS-Net coverage) costs nothing and is not timed. Real weights keep about 100-300 masks of an
image.

``install_survivors(segmenter)`` lets the decoder run as it is (its cost is timed) and adds to
its output what real weights give in shape: for each point prompt three nested disc-shaped logit
maps around the point (``slope * (radius - distance)``, clipped to +-20), and predicted IoUs
spread over [0.7, 1.0]. Radii, slopes and scores are a fixed hash of the point's coordinates, so
the stock and zsad generators, sent the same points in any batching, see the same structure;
the decoder's own output (random weights: logits within about +-0.3, IoUs about 0.04) stays in
the sum, so its float rounding (batching, bf16, compile) still reaches the masks and scores.
The output's dtype and device are the decoder's.

``points_per_side=32`` on a 1024x768 image keeps ~200 masks with the default filters
(``benchmarks/bench_sam.py`` prints the count).
"""

from __future__ import annotations

import torch

IOU_RANGE = (0.7, 1.0)
RADIUS_RANGE = (0.015, 0.35)  # outer disc radius, a fraction of the low-resolution side (log-uniform)
SLOPE_RANGE = (1.0, 16.0)  # logits per low-resolution pixel, per 256 px of side (log-uniform)


def _hash01(x, y, salt: float):
    """A fixed pseudo-random number in [0, 1) per (x, y) (float64 sine hash)."""
    v = torch.sin(x * 12.9898 + y * 78.233 + salt * 37.719) * 43758.5453
    return v - torch.floor(v)


def _loguniform(u, lo: float, hi: float):
    return torch.exp(torch.log(torch.tensor(lo, dtype=u.dtype)) + u * (torch.log(torch.tensor(hi / lo,
                                                                                               dtype=u.dtype))))


def synthetic_decoder_output(points_bn2: torch.Tensor, side: int, input_size: int, n_masks: int = 3):
    """(B, n_masks, side, side) float32 logits and (B, n_masks) float32 predicted IoU for point
    prompts ``points_bn2`` ((B, N, 2), the first point of each prompt, SAM's input frame of
    ``input_size`` pixels, as the prompt encoder is given them)."""
    pts = points_bn2[:, 0, :].double()
    x, y = pts[:, 0], pts[:, 1]
    scale = side / input_size
    grid = (torch.arange(side, dtype=torch.float64, device=pts.device) + 0.5)
    dist = torch.sqrt((grid[None, None, :] - (x * scale)[:, None, None]) ** 2
                      + (grid[None, :, None] - (y * scale)[:, None, None]) ** 2)  # (B, side, side)
    outer = _loguniform(_hash01(x, y, 1.0), *RADIUS_RANGE) * side
    shrink = (1.0, 0.5 + 0.3 * _hash01(x, y, 2.0), 0.2 + 0.3 * _hash01(x, y, 3.0))
    logits, ious = [], []
    for m in range(n_masks):
        radius = outer * shrink[m % 3]
        slope = _loguniform(_hash01(x, y, 4.0 + m), *SLOPE_RANGE) * 256 / side
        logits.append(torch.clamp(slope[:, None, None] * (radius[:, None, None] - dist), -20, 20))
        ious.append(IOU_RANGE[0] + (IOU_RANGE[1] - IOU_RANGE[0]) * _hash01(x, y, 10.0 + m))
    return torch.stack(logits[::-1], 1).float(), torch.stack(ious[::-1], 1).float()


def install_survivors(segmenter) -> dict:
    """Hook ``segmenter``'s decoders (stock's ``sam.mask_decoder`` and the zsad generator's) so that
    both give ``synthetic_decoder_output`` for the points they were sent (module docstring).
    Returns a dict whose ``"seconds"`` adds up the time spent making the synthetic output (to
    subtract from the decoder's)."""
    import time
    sam = segmenter.sam
    seen = {}
    stats = {"seconds": 0.0}
    side = sam.image_encoder.img_size // 4
    sam.prompt_encoder.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.__setitem__("points", kwargs["points"][0]), with_kwargs=True)

    def replace(_m, _args, _kwargs, out):
        points = seen.pop("points", None)
        if points is None:  # an outer decoder wrapping the inner one: the inner one has added
            return out
        masks, iou = out
        start = time.perf_counter()
        logits, scores = synthetic_decoder_output(points, side, sam.image_encoder.img_size, masks.shape[1])
        out = ((logits.to(masks.device) + masks.float()).to(masks.dtype),
               (scores.to(iou.device) + iou.float()).to(iou.dtype))
        if masks.is_cuda:
            torch.cuda.synchronize()
        stats["seconds"] += time.perf_counter() - start
        return out

    decoders = {id(sam.mask_decoder): sam.mask_decoder}
    if getattr(segmenter, "zsad", None) is not None:  # a compiled decoder: hook the module it compiled
        inner = getattr(segmenter.zsad.decoder, "_orig_mod", segmenter.zsad.decoder)
        decoders[id(inner)] = inner
    for d in decoders.values():
        d.register_forward_hook(replace, with_kwargs=True)
    return stats
