"""Process-wide torch settings, made once and explicitly by a front end.

The library itself never flips a global switch: constructors (`Dreamer`, `GraphCache`, `create_model`)
only use the device they are given. A front end (the CLI, the web app, a benchmark, a user's script
that wants the same speed) calls `configure` once, before it builds anything, and passes the device it
returns on.
"""

from __future__ import annotations

import torch

from .errors import StreamdreamError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; an explicit device must exist."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StreamdreamError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise StreamdreamError("--device mps was asked for but MPS is not available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise StreamdreamError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from None


def configure(device: str | torch.device = "auto", *, threads: int | None = None) -> torch.device:
    """Resolve `device` and set the process-wide torch options that suit it; returns the device.

    Call once per process, from the front end, before models are built. What it sets:

    - CUDA: `torch.backends.cudnn.benchmark = True`. Every stream renders one frame size over and over
      (and CUDA graphs need fixed sizes anyway), so the autotuned convolution choice is paid on the
      first frame and wins from the second.
    - CUDA: float32 matmuls in TF32 (`torch.set_float32_matmul_precision("high")`). The model runs under
      bf16 autocast on CUDA, so this only touches fp32 work outside it (Gram targets, evaluation);
      cuDNN convolutions already run TF32 by default, and TF32's 10-bit mantissa is far below what a
      perceptual objective can tell apart. It is left alone on the CPU, where it could switch oneDNN
      to reduced-precision kernels on some processors.
    - `threads`: `torch.set_num_threads(threads)` (intra-op threads, e.g. to leave cores to the video
      decoder, flow and encoder threads); None keeps torch's default (one per core).

    channels_last is not a global: `create_model` stores the weights in it on CUDA, explicitly.
    Calling it again with the same arguments changes nothing; these are process-wide settings, so a
    library embedding streamdream may prefer to set only the ones it wants.
    """
    resolved = resolve_device(device)
    if threads is not None:
        if threads < 1:
            raise StreamdreamError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    if resolved.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    return resolved


__all__ = ["configure", "resolve_device"]
