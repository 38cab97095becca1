"""Where a backward flow can be trusted: the forward-backward check of Ruder et al. (2016).

Warping the previous output is only right where the pixel was visible in the previous frame
and the flow is accurate. Pixels that just came into view (disocclusions), sit on motion
boundaries (where flow is blurred across two motions) or map to outside the frame must be
rendered afresh instead of copied, otherwise smeared ghosts trail behind moving objects.
"""

from __future__ import annotations

import torch

from .warp import warp


def in_frame_mask(flow: torch.Tensor) -> torch.Tensor:
    """Return B x 1 x H x W float: 1 where x + flow(x) lies inside the frame, 0 elsewhere.

    Inside means between the centres of the first and last pixels, the range in which bilinear
    sampling uses real pixels rather than the replicated border.
    """
    _, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return inside.unsqueeze(1).to(flow.dtype)


def occlusion_mask(forward: torch.Tensor, backward: torch.Tensor, *, grid: torch.Tensor | None = None) -> torch.Tensor:
    """Return the B x 1 x H x W certainty (1 = trustworthy, 0 = not) of the `backward` flow.

    `forward` is the flow previous -> current and `backward` the flow current -> previous, both
    B x 2 x H x W in pixels; the mask is for the pixels x of the current frame. With w the
    backward flow and w_hat the forward flow sampled at x + w(x), a pixel is rejected when

    * going there and back does not return home (disocclusion):
      |w + w_hat|^2 > 0.01 (|w|^2 + |w_hat|^2) + 0.5,
    * the flow changes sharply around it (motion boundary):
      |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002,
    * or x + w(x) falls outside the previous frame.

    Thresholds grow with the flow magnitude because flow error grows with motion. Gradients are
    central differences, as in the authors' consistencyChecker. `grid`: the backward flow's
    `sample_grid`, if the caller has it. Squares are products (a frame's plan runs this on every
    carried frame: `pow` took longer for the same numbers).
    """
    if forward.shape != backward.shape:
        raise ValueError(
            f"forward {tuple(forward.shape)} and backward {tuple(backward.shape)} flows differ"
        )
    w = backward
    w_hat = warp(forward, w, grid=grid)
    w_sq = (w * w).sum(dim=1, keepdim=True)
    there_and_back = w + w_hat
    round_trip = (there_and_back * there_and_back).sum(dim=1, keepdim=True)
    disoccluded = round_trip > 0.01 * (w_sq + (w_hat * w_hat).sum(dim=1, keepdim=True)) + 0.5
    grad_y, grad_x = torch.gradient(w, dim=(2, 3))
    grad_sq = (grad_x * grad_x + grad_y * grad_y).sum(dim=1, keepdim=True)
    boundary = grad_sq > 0.01 * w_sq + 0.002
    trusted = ~(disoccluded | boundary)
    return trusted.to(w.dtype) * in_frame_mask(w)
