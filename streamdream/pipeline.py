"""Source -> session -> sink, each stage on its own thread with bounded queues.

Decoding, optical flow and encoding are CPU work in C libraries that release the GIL, so they can
overlap the optimizer: while frame t is being dreamed, frame t+1 is decoded and its flow computed,
and frame t-1 is encoded. Two shapes of stream:

* files (`run_file`): every frame is processed, in order; back-pressure through the bounded queues
  keeps memory flat however long the video is;
* live sources (`LiveStream`, one session on a `streamdream.engine.LiveEngine`): the newest frame
  wins. A camera never waits for the dreamer; a frame that arrives while another is still waiting
  is dropped (and counted), so latency stays bounded.

The pipeline moves frames and decides nothing: the session computes the flow
(`StreamSession.prepare`, on the reader thread for files), and its carry decides warm start against
fresh start and runs the mode (`StreamSession.process`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .carry import FrameMode
from .engine import LiveEngine, LiveResult, LiveSession
from .io.video import Frame
from .session import StreamSession
from .settings import TemporalSettings

__all__ = ["LiveResult", "LiveStream", "run_file"]

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

    A reader thread decodes and prepares each frame (the session's flow), the
    calling thread processes it, a writer thread encodes. If the caller is interrupted (Ctrl-C)
    or a stage fails, the frames already processed are still written before the error propagates,
    so a partial output holds everything that was done.
    """
    inbox: queue.Queue = queue.Queue(depth)
    outbox: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    written = 0
    writer_error: list[BaseException] = []

    def read() -> None:
        try:
            for frame in frames:
                if not _put(inbox, (frame, session.prepare(frame.image)), stop):
                    return
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
            frame, prepared = item
            result = session.process(prepared)
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


class LiveStream:
    """One live source through `mode` as a context manager: a single-session view on a `LiveEngine`.

    `submit` hands in a camera frame and never blocks; results go to `on_result` (on the engine's
    thread) and to `latest`. `dropped` counts frames replaced before they could be processed. On
    exit the last frame submitted is processed, the stream closes, and an error raised while
    processing is raised here. Without an `engine` the stream gets an engine of its own.
    """

    def __init__(self, mode: FrameMode, settings: TemporalSettings | None = None, *, seed: int | None = 0,
                 on_result: Callable[[LiveResult], None] | None = None, engine: LiveEngine | None = None) -> None:
        self.mode, self.settings, self.seed = mode, settings, seed
        self.on_result = on_result
        self.engine = engine
        self.live: LiveSession | None = None
        self._own_engine = engine is None

    def __enter__(self) -> LiveStream:
        if self.engine is None:
            self.engine = LiveEngine()
        self.live = self.engine.open(self.mode, self.settings, seed=self.seed, on_result=self.on_result)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            self.live.close(drain=exc_type is None)
        finally:
            if self._own_engine:
                self.engine.close()
        if self.live.error is not None and exc_type is None:
            raise self.live.error

    def submit(self, image: np.ndarray) -> int:
        return self.live.submit(image)

    def wait(self, frame: int | None = None, timeout: float | None = None) -> LiveResult:
        """The result of frame number `frame` (default: the last submitted) or of a newer one."""
        return self.live.wait(frame, timeout)

    @property
    def latest(self) -> LiveResult | None:
        return self.live.latest if self.live else None

    @property
    def stream(self) -> StreamSession | None:
        """The stream's warm state and timings, once open."""
        return self.live.stream if self.live else None

    @property
    def dropped(self) -> int:
        return self.live.dropped if self.live else 0

    @property
    def notice(self) -> str | None:
        """What the engine has to tell about the stream (e.g. it ran out of memory and works smaller now)."""
        return self.live.notice if self.live else None

    @property
    def processed(self) -> int:
        return self.live.processed if self.live else 0
