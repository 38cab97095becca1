"""Backward warping of images along a dense flow field.

Backward warping (look up where each output pixel comes from) leaves no holes, unlike pushing
pixels forward, and maps directly onto `grid_sample`, so it runs on whichever device the image
is on without a hand-written loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(image: torch.Tensor, flow: torch.Tensor, *, mode: str = "bilinear", grid: torch.Tensor | None = None) -> torch.Tensor:
    """Return out with out(x) = image(x + flow(x)), bilinear (or `mode="bicubic"`), edges clamped (border padding).

    `image` is B x C x H x W, `flow` B x 2 x H x W in pixels (dx, dy). Typical use is
    `warp(prev_output, backward_flow)` with the flow from the current frame to the previous one,
    which lays the previous output over the current frame. Shape, dtype and device of `image`
    are kept. Half-precision images are sampled in float32: a float16 grid cannot address
    pixels precisely in frames wider than about a thousand pixels. `grid`: the flow's
    `sample_grid`, for a caller that warps several images along one flow (`Motion`).

    Bilinear sampling at a fractional offset is a small blur, bicubic a sharper lookup that
    overshoots at edges; `Motion.carry` (see `motion.CARRY_SAMPLING`) and the judge
    (`warping_error`, the convention of Lai et al.) both sample bilinear.
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"warp needs image B x C x H x W and flow B x 2 x H x W, got "
            f"{tuple(image.shape)} and {tuple(flow.shape)}"
        )
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in batch or size"
        )
    dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    if grid is None or grid.dtype != dtype:  # (a float64 image wants a float64 grid)
        grid = sample_grid(flow.to(dtype))
    out = F.grid_sample(
        image.to(dtype), grid, mode=mode, padding_mode="border", align_corners=False
    )
    return out.to(image.dtype)


def sample_grid(flow: torch.Tensor) -> torch.Tensor:
    """Turn a B x 2 x H x W pixel flow into the B x H x W x 2 normalised grid of `grid_sample`.

    Pixel (i, j) has its centre at integer coordinates (x=j, y=i), as in OpenCV's flow. With
    align_corners=False, grid_sample puts -1 and +1 on the outer edges of the edge pixels, so
    the centre of pixel x is (2x + 1) / W - 1. This form also stays defined for one-pixel-wide
    images, where the align_corners=True form x * 2 / (W - 1) - 1 would divide by zero.
    """
    _, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    grid_x = (2 * (xs + flow[:, 0]) + 1) / width - 1
    grid_y = (2 * (ys + flow[:, 1]) + 1) / height - 1
    return torch.stack((grid_x, grid_y), dim=-1)
