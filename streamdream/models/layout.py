"""What this machine's CPU runs a network fastest in (memory layout, precision), measured once and kept.

On a CUDA GPU the answers are known (cuDNN's bf16 tensor-core kernels are channels-last). On a CPU they
depend on the processor and on PyTorch's oneDNN build: on the 2-core Xeon (AVX-512, AMX) a lite0 step
at 320x240 took 44 ms channels-last against 66 ms in PyTorch's default layout (`benchmarks/cpu_paths.py`),
and the style transformer's pass 20 ms under bf16 autocast against 31 ms in float32, while the 26-style
network's was no faster in bf16 (57 against 54 ms); other processors may differ. (Since the
convolutions run fused on a CPU, `fused`, the two layouts' steps there came within 3-5% of each other,
33.9 against 32.9 ms, so either answer costs little.) So the first time a
network is built on a CPU its candidates are timed (a fraction of a second) and the answer is kept,
per processor, PyTorch version, thread count and network, in the user's cache
(`$XDG_CACHE_HOME/streamdream/cpu-choices.json`), where every later start reads it. An environment
variable decides without measuring: `STREAMDREAM_CPU_LAYOUT=channels_last` (or `contiguous`) for the
backbones, `STREAMDREAM_CPU_DTYPE=float32` (or `bfloat16`) for the style networks.

bf16 autocast is not among a backbone's choices: on that Xeon a dream step was no faster in it than in
float32 channels-last, and it changes a step by far more than the layout does. A style network's pass
in bf16 moved a painting by 0.002 on average (half a grey level), a tenth of what the int8 originals differ.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import StreamdreamError

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PROBE_SIZE = (120, 160)  # height, width of a backbone's timed step: small, so the probe is quick
# A style network's pass is timed at the size of a live frame on a CPU (240 px on the longer side,
# `settings.LIVE_MAX_SIDE`): at 120x160 the 26-style network ran 35% faster in bf16, at 180x240 and
# above no faster, while the style transformer gained 20-40% at every size.
DTYPE_PROBE_SIZE = (180, 240)
PROBE_REPEATS = 5


def cache_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamdream" / "cpu-choices.json"


def processor() -> str:
    """This machine's processor, as /proc/cpuinfo names it (elsewhere what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fastest(network: str, candidates: dict[str, Callable[[], Callable[[], object]]], *, variable: str) -> str:
    """The name of the candidate this machine runs `network` fastest with.

    Decided by the environment variable `variable` (one of the names), else by the cache, else by
    timing: each candidate is a setup that returns the run to time (best of a few after a warm-up).
    """
    forced = os.environ.get(variable)
    if forced:
        if forced not in candidates:
            raise StreamdreamError(f"{variable} must be one of {', '.join(candidates)}, got {forced!r}")
        return forced
    key = f"{network} | {processor()} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    path = cache_file()
    known = _read(path)
    if not (isinstance(known.get(key), dict) and set(known[key]) == set(candidates)):  # not measured yet (or mangled)
        known[key] = {name: _best_ms(setup()) for name, setup in candidates.items()}
        _write(path, known)
    timings = known[key]
    return min(timings, key=timings.get)


def fastest_cpu_layout(model: torch.nn.Module, layer: str) -> torch.memory_format:
    """The layout `model` (on the CPU, in the default layout) should keep, timing a step to `layer` both
    ways if need be (the model is left in the last layout timed; the caller converts it to the answer)."""

    def step(layout: torch.memory_format) -> Callable[[], object]:
        model.to(memory_format=layout)
        image = torch.rand(1, 3, *PROBE_SIZE).contiguous(memory_format=layout)

        def timed() -> object:
            x = image.detach().requires_grad_(True)
            return torch.autograd.grad(model(x, [layer])[layer].mean(), x)

        return timed

    name = fastest(model.name, {name: lambda layout=layout: step(layout) for name, layout in LAYOUTS.items()}, variable="STREAMDREAM_CPU_LAYOUT")
    return LAYOUTS[name]


def fastest_cpu_dtype(name: str, network: Callable[[torch.Tensor], object]) -> torch.dtype:
    """The precision a style network (a function of a probe image, on the CPU) runs fastest in:
    float32, or bfloat16 under autocast."""

    def run(dtype: torch.dtype) -> Callable[[], object]:
        image = torch.rand(1, 3, *DTYPE_PROBE_SIZE)

        def timed() -> object:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
                return network(image)

        return timed

    return DTYPES[fastest(name, {key: lambda dtype=dtype: run(dtype) for key, dtype in DTYPES.items()}, variable="STREAMDREAM_CPU_DTYPE")]


def _best_ms(run: Callable[[], object]) -> float:
    """The best of a few runs, in milliseconds, after one that warms the kernels up."""
    best = float("inf")
    for repeat in range(PROBE_REPEATS + 1):
        started = time.perf_counter()
        run()
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
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".cpu-choices-", suffix=".json", delete=False) as file:
            json.dump(known, file, indent=1)
        os.replace(file.name, path)
    except OSError:
        pass
