"""Process-wide torch settings, made once and explicitly by a front end.

The library itself never flips a global switch: constructors (`Dreamer`, `GraphCache`, `create_model`)
only use the device they are given. A front end (the CLI, the web app, a benchmark, a user's script
that wants the same speed) calls `configure` once, before it builds anything, and passes the device it
returns on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from .errors import StreamdreamError

T = TypeVar("T")


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
    - CPU: the C library keeps the memory a step frees for the next step (`keep_freed_memory`).

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
    if resolved.type == "cpu":
        keep_freed_memory()
    return resolved


def on_own_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` run on a thread of its own, waited for: the OpenMP team torch starts for it ends with it.

    PyTorch's CPU build runs its parallel loops on GNU OpenMP, which keeps one team of worker threads
    for each thread that ever ran one, for that thread's whole life. Once there are more such workers
    than cores, every team stops spinning between loops and sleeps instead, and the many small loops
    of a model step slow down: measured on the 2-core Xeon, a live 320x240 frame's optimizer took
    150 ms on the live engine's thread while the main thread kept the team it had used to build the
    model, 71 ms when the model was built on a thread of its own (`benchmarks/cpu_paths.py` shows the
    same on one step: 72 against 51 ms). So
    one-off model work (building a model, the live capacity probe) runs here, and the thread that
    serves frames keeps the only team.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamdream-once") as pool:
        return pool.submit(fn, *args).result()


def keep_freed_memory() -> None:
    """Have glibc's malloc keep what the process frees, for the next step to reuse; elsewhere nothing.

    A CPU model step allocates its activations and gradients afresh (tens of MB at 320x240) and frees
    them at its end. By default glibc hands such blocks back to the system (`mmap` for blocks above a
    threshold it keeps raising, trimming a heap's top, unmapping a thread's 64 MB heaps once empty),
    so the next step takes them again page by page, each page faulted in and zeroed by the kernel.
    Measured on the 2-core Xeon, lite0 forward to `blocks.4` and back at 320x240: 4,000-8,000 page
    faults a step, and 36-38 ms against 42-49 ms a step once they are gone, on the main thread and on
    a thread of its own alike. So blocks up to 32 MB come from the heap, a heap's top is trimmed only
    beyond 1 GB, and 64 MB are kept at its top (which also keeps a thread's heaps mapped: glibc
    unmaps an empty one only when that leaves its arena more than this pad). Memory is still handed
    back where much was freed at once: `release_memory` trims explicitly.
    """
    mallopt = _libc("mallopt")
    if mallopt is None:
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the largest glibc allows on 64-bit
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    mallopt(_M_TOP_PAD, 64 << 20)  # a thread's heap size on 64-bit


def release_memory() -> None:
    """Hand the memory the process has freed back to the system (glibc's `malloc_trim`; elsewhere nothing).

    glibc keeps what a process frees for reuse, and the frames and tensors of streams of many sizes
    leave its arenas fragmented, so the process only grows: in `benchmarks/soak.py`'s churn (100
    visitors of random sizes, come and gone) it ended 112 MB (12%) above its start with nothing open;
    trimmed as each live session closed, 20 MB (2%). A trim took 24 ms in a 1 GB process on the
    2-core Xeon: for moments when much was just freed (a capacity probe's end, a session closing).
    """
    trim = _libc("malloc_trim")
    if trim is not None:
        trim(0)


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's malloc.h


@functools.cache
def _libc(function: str) -> Callable[..., int] | None:
    """A function of glibc's malloc (`malloc_trim`, `mallopt`), or None where the C library has none
    (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), function, None) if name else None


__all__ = ["configure", "keep_freed_memory", "on_own_thread", "release_memory", "resolve_device"]
