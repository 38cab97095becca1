"""The CUDA fast path: a stream's optimizer step captured once as a CUDA graph, then replayed.

At stream sizes an optimizer step is launch-bound on a large GPU: hundreds of small kernels for the
forward and backward passes, each launched from Python. (Measured by the issue that asked for this,
H100, EfficientNet-Lite0 up to blocks.4, 640x480: ~10 ms per step eager, ~2 ms replayed.) A stream's
frames all have one size, so the whole step is captured once per size and settings and replayed for
every iteration of every later frame.

A captured step reads and writes only its static buffers: callers copy a frame's inputs in (the
image, a jitter shift, the frame's targets), replay, and copy the result out. On other devices the
same step is simply called on the same buffers, which is how the CPU test suite checks everything but
the capture itself. `streamdream.optimize` builds the dream step, `streamdream.style` the style step.

Eager code runs instead the first time a size is seen (a still, a resized stream: capturing would
cost more than it saves), and for good after a capture fails (logged once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator

import torch

log = logging.getLogger(__name__)

WARMUP_STEPS = 2
"""Steps run on the capture stream before capturing: cuDNN autotuning (benchmark mode), lazy library
handles and optimizer state must not be created during capture."""


class Captured:
    """`step` over the tensors in `buffers`, as a CUDA graph on CUDA, as a plain call elsewhere.

    `step` must change only the buffers and `state` (what it owns besides them, e.g. an optimizer, which
    callers reset between uses), never wait for the host and always launch the same work: on CUDA it
    is run `WARMUP_STEPS` times and then recorded once, so it must expect to be called that way.
    """

    def __init__(self, step: Callable[[], object], buffers: dict[str, torch.Tensor], device: torch.device, state: object = None) -> None:
        self.buffers = buffers
        self.state = state
        self.replay = step
        if device.type != "cuda":
            return
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        try:
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_STEPS):
                    step()
            self.graph = torch.cuda.CUDAGraph()
            # thread_local: other threads (a second UI user, an uploader) may keep using CUDA meanwhile
            with torch.cuda.graph(self.graph, stream=stream, capture_error_mode="thread_local"):
                step()
        finally:
            torch.cuda.current_stream(device).wait_stream(stream)
        self.replay = self.graph.replay


class GraphCache:
    """Captured steps by key (size, model, objective, settings), least recently used dropped beyond
    `max_graphs`, since each graph holds its own pool of GPU memory.

    Thread-safe: a captured step's buffers are shared by every call, so `use` holds a lock while the
    caller loads, replays and reads them (the GPU would serialize the work anyway).
    """

    def __init__(self, max_graphs: int = 6) -> None:
        self.max_graphs = max_graphs
        self.failure: str | None = None
        self._steps: OrderedDict[Hashable, Captured] = OrderedDict()
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        torch.backends.cudnn.benchmark = True  # fixed sizes: autotuned convolutions pay off from the second frame

    def __len__(self) -> int:
        return len(self._steps)

    @contextlib.contextmanager
    def use(self, key: Hashable, build: Callable[[], Captured]) -> Iterator[Captured | None]:
        """The captured step for `key` (built on the key's second use), or None: run eagerly."""
        with self._lock:
            yield self._get(key, build)

    def _get(self, key: Hashable, build: Callable[[], Captured]) -> Captured | None:
        if self.failure is not None:
            return None
        captured = self._steps.get(key)
        if captured is None:
            if key not in self._seen:
                self._seen.add(key)
                return None
            try:
                captured = build()
            except RuntimeError as error:
                self.failure = str(error).splitlines()[0] if str(error) else type(error).__name__
                log.warning("CUDA graph capture failed, running eagerly from now on: %s", self.failure)
                return None
            self._steps[key] = captured
            while len(self._steps) > self.max_graphs:
                self._steps.popitem(last=False)
        self._steps.move_to_end(key)
        return captured
