"""The CUDA fast path: a stream's optimizer step captured once as a CUDA graph, then replayed.

At stream sizes one dream step is launch-bound on a large GPU: hundreds of small kernels for the
jittered forward and backward passes, each launched from Python. (Measured by the issue that asked
for this, H100, EfficientNet-Lite0 up to blocks.4, 640x480: ~10 ms per step eager, ~2 ms replayed.)
A stream's frames all have one size, so the whole step -- jitter roll, tiled forward and backward,
gradient normalization, update and clamp (`optimize.gradient_step`) -- is captured once per size and
settings and replayed for every iteration of every later frame.

A replay reads the image and the jitter shift from static device buffers: the shifts still come
from the stream's seeded generator and are copied in device to device, so jitter stays random under
replay, results match eager within bf16 tolerance, and nothing waits for the host inside the loop.

Eager runs instead on other devices, the first time a size is seen (a still or a resized stream:
capturing would cost more than it saves), and for good after a capture fails (logged once).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace

import torch

from .models import Backbone
from .objectives import Objective
from .optimize import Ascent, Progress, gradient_step

log = logging.getLogger(__name__)

WARMUP_STEPS = 2
"""Eager steps on the capture stream before capturing: cuDNN autotuning (benchmark mode) and lazy
library handles must not happen during capture."""


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    image: torch.Tensor  # the step's input, updated in place by every replay
    shift: torch.Tensor  # (dy, dx) of the replay's jitter roll


class StepGraphs:
    """Captured optimizer steps for one model and objective, keyed by image size and step settings.

    Owned by a `Dreamer`; thread-safe (replays of one graph share its buffers, so runs are serialized:
    the GPU would serialize them anyway). At most `max_graphs` are kept, least recently used dropped,
    since each holds its own pool of GPU memory.
    """

    def __init__(self, max_graphs: int = 6) -> None:
        self.max_graphs = max_graphs
        self.failure: str | None = None
        self._graphs: OrderedDict[Hashable, _Captured] = OrderedDict()
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        torch.backends.cudnn.benchmark = True  # fixed sizes: autotuned convolutions pay off from the second frame

    def __len__(self) -> int:
        return len(self._graphs)

    def run(
        self,
        image: torch.Tensor,
        shifts: torch.Tensor,
        model: Backbone,
        objective: Objective,
        ascent: Ascent,
        progress: Progress | None = None,
    ) -> torch.Tensor | None:
        """`image` after one replayed step per row of `shifts` (on the image's device), or None: run eagerly."""
        if image.device.type != "cuda" or self.failure is not None or len(shifts) == 0:
            return None
        key = (tuple(image.shape), image.dtype, image.device, id(model), id(objective), replace(ascent, iterations=0))
        with self._lock:
            captured = self._graphs.get(key)
            if captured is None:
                if key not in self._seen:
                    self._seen.add(key)
                    return None
                captured = self._capture(key, image, model, objective, ascent)
                if captured is None:
                    return None
            self._graphs.move_to_end(key)
            captured.image.copy_(image)
            for shift in shifts:
                captured.shift.copy_(shift)
                captured.graph.replay()
                if progress is not None:
                    progress(1)
            return captured.image.clone()

    def _capture(self, key: Hashable, image: torch.Tensor, model: Backbone, objective: Objective, ascent: Ascent) -> _Captured | None:
        static_image = image.clone()
        static_shift = torch.zeros(2, dtype=torch.long, device=image.device)
        stream = torch.cuda.Stream(image.device)
        stream.wait_stream(torch.cuda.current_stream(image.device))
        try:
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_STEPS):
                    gradient_step(static_image.clone(), static_shift, model, objective, ascent)
            graph = torch.cuda.CUDAGraph()
            # thread_local: other threads (a second UI user, an uploader) may keep using CUDA meanwhile
            with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                static_image.copy_(gradient_step(static_image, static_shift, model, objective, ascent))
        except RuntimeError as error:
            self.failure = str(error).splitlines()[0]
            log.warning("CUDA graph capture failed, running eagerly from now on: %s", self.failure)
            return None
        finally:
            torch.cuda.current_stream(image.device).wait_stream(stream)
        self._graphs[key] = captured = _Captured(graph, static_image, static_shift)
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        return captured
