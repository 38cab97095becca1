"""The CUDA fast path: a stream's optimizer step captured once as a CUDA graph, then replayed.

At stream sizes an optimizer step is launch-bound on a large GPU: hundreds of small kernels for the
forward and backward passes, each launched from Python. (Measured by the issue that asked for this,
H100, EfficientNet-Lite0 up to blocks.4, 640x480: ~10 ms per step eager, ~2 ms replayed.) A stream's
frames all have one size, so the whole step is captured once per size and settings and replayed for
every iteration of every later frame.

A step is written over static buffers (`Captured`): callers copy a call's inputs in (the image, a
jitter shift, a frame's targets), run it, and copy the result out. `static_step` is that wrapper,
for every step rule of `streamdream.optimize`: it hands out the captured step of a size seen before,
or the same step built now over fresh buffers and called eagerly, so both paths run the same code.
Off CUDA a "captured" step is simply called on its buffers, which is how the CPU test suite checks
everything but the capture itself.

Eager code runs instead the first time a size is seen (a still, a resized stream: capturing would
cost more than it saves), and for good after a capture fails (logged once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping

import torch

log = logging.getLogger(__name__)

WARMUP_STEPS = 2
"""Steps run on the capture stream before capturing: cuDNN autotuning (benchmark mode), lazy library
handles and optimizer state must not be created during capture."""


class Captured:
    """`step` over the tensors in `buffers`: replayed as a CUDA graph when `capture` is set on CUDA,
    called plainly otherwise.

    `step` must change only the buffers and what `reset` restores (e.g. an optimizer's state), never
    wait for the host and always launch the same work: on CUDA it is run `WARMUP_STEPS` times and then
    recorded once, so it must expect to be called that way.
    """

    def __init__(
        self,
        step: Callable[[], object],
        buffers: dict[str, torch.Tensor],
        device: torch.device,
        *,
        reset: Callable[[], None] | None = None,
        capture: bool = True,
    ) -> None:
        self.buffers = buffers
        self.reset = reset
        self.replay = step
        if not capture or device.type != "cuda":
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

    def start(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """Load a new call's inputs (buffers of the same names) and make the state fresh again."""
        with torch.no_grad():
            for name, tensor in inputs.items():
                self.buffers[name].copy_(tensor)
        if self.reset is not None:
            self.reset()


@contextlib.contextmanager
def static_step(
    graphs: GraphCache | None,
    key: Hashable,
    build: Callable[[dict[str, torch.Tensor], bool], Captured],
    inputs: Mapping[str, torch.Tensor],
) -> Iterator[Captured]:
    """A step over static buffers holding `inputs`, for the caller to run and read out.

    `build(buffers, capture)` writes the step over `buffers` (one per input, same names). With
    `graphs`, a `key` seen before gets its captured step, loaded with this call's inputs (see
    `GraphCache`); otherwise the step is built now over fresh copies of the inputs and runs eagerly.
    Either way the caller's loop is the same code, which keeps the two paths equal.
    """

    def fresh(capture: bool) -> Captured:
        return build({name: tensor.detach().clone() for name, tensor in inputs.items()}, capture)

    if graphs is not None:
        with graphs.use(key, lambda: fresh(True)) as captured:
            if captured is not None:
                captured.start(inputs)
                yield captured
                return
    yield fresh(False)


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
