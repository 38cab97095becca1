"""Crossing the edge between uint8 frames (H x W x 3 RGB numpy) and core tensors (1 x 3 x H x W in [0, 1])."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W float32 in [0, 1] on `device` (converted after the copy: 4x less traffic)."""
    if not (rgb.flags.writeable and rgb.flags.c_contiguous):
        rgb = np.array(rgb, order="C")  # torch cannot wrap read-only or strided memory
    tensor = upload(torch.from_numpy(rgb), device)
    # contiguous(): the permuted view is channels-last in memory, which CPU convolutions run far slower on
    return tensor.permute(2, 0, 1).unsqueeze(0).contiguous().float().div_(255.0)


def upload(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on `device`. CUDA copies go through pinned memory: only those are truly asynchronous,
    a copy from pageable memory makes the host wait for the GPU's queue to drain."""
    device = torch.device(device)
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W in [0, 1] -> H x W x 3 uint8, rounded to nearest."""
    quantized = image[0].detach().float().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    return quantized.permute(1, 2, 0).contiguous().cpu().numpy()
