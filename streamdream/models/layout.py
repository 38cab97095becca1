"""The memory layout a model's convolutions run fastest in on this machine's CPU, measured once.

On a CUDA GPU the answer is known (cuDNN's bf16 tensor-core kernels are channels-last). On a CPU it
depends on the processor and on PyTorch's oneDNN build: on the 2-core Xeon (AVX-512, AMX) a lite0 step
at 320x240 took 44 ms channels-last against 66 ms in PyTorch's default layout (`benchmarks/cpu_paths.py`),
but other processors may differ. So the first model built on a CPU times one small step both ways
(about a quarter of a second) and the answer is kept, per processor, PyTorch version, thread count and
model, in the user's cache (`$XDG_CACHE_HOME/streamdream/cpu-layout.json`), where every later start
reads it. `STREAMDREAM_CPU_LAYOUT=channels_last` (or `contiguous`) decides without measuring.

bf16 autocast is not among the choices on a CPU: on that Xeon it was no faster than fp32 channels-last,
and it changes a step by far more than the layout does.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from ..errors import StreamdreamError

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
PROBE_SIZE = (120, 160)  # height, width of the timed step: small, so the probe is quick
PROBE_REPEATS = 5


def cache_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamdream" / "cpu-layout.json"


def processor() -> str:
    """This machine's processor, as /proc/cpuinfo names it (elsewhere what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fastest_cpu_layout(model: torch.nn.Module, layer: str) -> torch.memory_format:
    """The layout `model` (on the CPU, in the default layout) should keep; may convert it meanwhile.

    Decided by `STREAMDREAM_CPU_LAYOUT`, else by the cache, else by timing a step to `layer` both ways
    (the model is left channels-last after that; the caller converts it to the answer).
    """
    forced = os.environ.get("STREAMDREAM_CPU_LAYOUT")
    if forced:
        if forced not in LAYOUTS:
            raise StreamdreamError(f"STREAMDREAM_CPU_LAYOUT must be one of {', '.join(LAYOUTS)}, got {forced!r}")
        return LAYOUTS[forced]
    key = f"{model.name} | {processor()} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    path = cache_file()
    known = _read(path)
    if not (isinstance(known.get(key), dict) and set(known[key]) == set(LAYOUTS)):  # not measured yet (or mangled)
        known[key] = {name: _step_ms(model.to(memory_format=layout), layer, layout) for name, layout in LAYOUTS.items()}
        _write(path, known)
    timings = known[key]
    return LAYOUTS[min(timings, key=timings.get)]


def _step_ms(model: torch.nn.Module, layer: str, layout: torch.memory_format) -> float:
    """The best of a few forward-and-backward steps to `layer` on a probe image, in milliseconds."""
    image = torch.rand(1, 3, *PROBE_SIZE).contiguous(memory_format=layout)
    best = float("inf")
    for repeat in range(PROBE_REPEATS + 1):  # the first warms the kernels up
        started = time.perf_counter()
        x = image.detach().requires_grad_(True)
        torch.autograd.grad(model(x, [layer])[layer].mean(), x)
        if repeat:
            best = min(best, 1000 * (time.perf_counter() - started))
    return best


def _read(path: Path) -> dict:
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}
    return known if isinstance(known, dict) else {}


def _write(path: Path, known: dict) -> None:
    """Replace the cache atomically; a cache that cannot be written only means measuring next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".cpu-layout-", suffix=".json", delete=False) as file:
            json.dump(known, file, indent=1)
        os.replace(file.name, path)
    except OSError:
        pass
