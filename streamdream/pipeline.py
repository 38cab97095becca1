"""Source -> session -> sink, each stage on its own thread with bounded queues.

Decoding, optical flow and encoding are CPU work in C libraries that release the GIL, so they can
overlap the optimizer: while frame t is being dreamed, frame t+1 is decoded and its flow computed,
and frame t-1 is encoded. Two shapes of stream:

* files (`run_file`): every frame is processed, in order; back-pressure through the bounded queues
  keeps memory flat however long the video is;
* live sources (`LiveStream`): the newest frame wins. A camera never waits for the dreamer; a frame
  that arrives while another is still waiting is dropped (and counted), so latency stays bounded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .io.video import Frame
from .session import StreamSession
from .temporal import FlowEstimator, frame_flows

_DONE = object()


class _Failure:
    """An exception raised on a worker thread, carried through a queue to be re-raised by the caller."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(box: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the pipeline is stopping; False when it stopped first."""
    while not stop.is_set():
        try:
            box.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def run_file(
    frames: Iterable[Frame],
    session: StreamSession,
    write: Callable[[np.ndarray, Frame], None],
    *,
    depth: int = 4,
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Process every frame of a file source in order; returns the number of frames written.

    A reader thread decodes and computes each frame pair's flow (with its own DIS instance), the
    calling thread runs the session, a writer thread encodes. If the caller is interrupted (Ctrl-C)
    or a stage fails, the frames already processed are still written before the error propagates,
    so a partial output holds everything that was done.
    """
    settings = session.settings
    estimator = FlowEstimator(settings.flow_preset, settings.flow_scale)
    inbox: queue.Queue = queue.Queue(depth)
    outbox: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    written = 0
    writer_error: list[BaseException] = []

    def read() -> None:
        previous = None
        try:
            for frame in frames:
                flows = frame_flows(estimator, previous, frame.image, check=settings.check) if session.wants_flow(previous, frame.image) else None
                if not _put(inbox, (frame, flows), stop):
                    return
                previous = frame.image
            _put(inbox, _DONE, stop)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            _put(inbox, _Failure(error), stop)

    def encode() -> None:
        nonlocal written
        try:
            while (item := outbox.get()) is not _DONE:
                write(*item)
                written += 1
        except BaseException as error:  # noqa: BLE001
            writer_error.append(error)
            stop.set()

    reader = threading.Thread(target=read, name="streamdream-read", daemon=True)
    writer = threading.Thread(target=encode, name="streamdream-write", daemon=True)
    reader.start()
    writer.start()
    processed = 0
    try:
        while not writer_error:
            item = inbox.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.error
            frame, flows = item
            result = session.process(frame.image, flows)
            if not _put(outbox, (result, frame), stop):
                break
            processed += 1
            if on_frame is not None:
                on_frame(processed)
    finally:
        stop.set()  # the reader stops at its next put; the writer drains what was processed
        while writer.is_alive():
            try:
                outbox.put(_DONE, timeout=0.05)
                break
            except queue.Full:  # only while a failed writer has stopped draining
                continue
        writer.join()
        reader.join(timeout=5)
    if writer_error:
        raise writer_error[0]
    return written


@dataclass(frozen=True)
class LiveResult:
    image: np.ndarray
    latency_ms: float  # from `submit` of its input frame to the result being ready
    index: int  # position among the results produced


class LiveStream:
    """Newest-frame-wins processing of a live source on a background thread.

    `submit` hands in a camera frame and never blocks; results go to `on_result` (on the worker
    thread) and to `latest`. `dropped` counts frames replaced before they could be processed.
    """

    def __init__(self, session: StreamSession, on_result: Callable[[LiveResult], None] | None = None) -> None:
        self.session = session
        self.on_result = on_result
        self.latest: LiveResult | None = None
        self.dropped = 0
        self.processed = 0
        self._pending: tuple[np.ndarray, float] | None = None
        self._ready = threading.Condition()
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="streamdream-live", daemon=True)

    def __enter__(self) -> LiveStream:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def submit(self, image: np.ndarray) -> None:
        with self._ready:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (image, time.perf_counter())
            self._ready.notify()

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    self._ready.wait_for(lambda: self._pending is not None or self._stopping)
                    if self._pending is None:
                        return
                    image, submitted = self._pending
                    self._pending = None
                result = self.session.process(image)
                self.latest = LiveResult(result, 1000 * (time.perf_counter() - submitted), self.processed)
                self.processed += 1
                if self.on_result is not None:
                    self.on_result(self.latest)
        except BaseException as error:  # noqa: BLE001 - re-raised by __exit__ on the caller's thread
            self._error = error
