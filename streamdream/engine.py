"""The live engine: one worker thread and one compute lock serve every live stream of a process.

Every front end (the web UI, `streamdream live` through `pipeline.LiveStream`, `benchmarks/live.py`, a
script) opens a `LiveSession` per camera with `LiveEngine.open` and hands it frames with `submit`,
which never blocks: the newest frame wins, and a frame replaced before the worker took it is
counted in `dropped`. Each round the worker gathers the pending frame of every open session
(`_gather`) and runs one `streamdream.scheduler.tick` on them under the compute lock: flows in
parallel, frames of sessions with the same model, working size and step settings batched into
every optimizer step, the others one after another. Every session with a pending frame gets one
result per round, so no session starves and equal sessions run at equal rates.

A stream held at its mode's still effect (`carry.EffectHold`: the live preset on a CPU grows its dream
from the frame; any stream whose mode changed) asks the mode for it on its next carried frame, and a
`Dreamer` measures it by dreaming a thumbnail: 0.6 s on the 2-core Xeon at 160x120, during which the
round, and every other visitor's frame, waited. So the engine has it measured on a thread of its own
as soon as a stream will ask (`_measure_effect`), and that stream's frames sit out the rounds until it
is known; the others' go on.

Model work of other kinds (a still, a video render) runs under the same lock through `run(fn)`
(on a thread of its own, which ends with it), a mode wrapped by `serialized(mode)` (on the render's
own threads) or `exclusive()`; the lock is granted in arrival order, so a render and a live stream
alternate frame by frame instead of one starving the other.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import numpy as np
import torch

from .carry import FrameMode
from .convert import to_tensor
from .errors import StreamdreamError, is_out_of_memory
from .io.images import resize_max_side
from .scheduler import Work, tick, to_bucket
from .runtime import on_own_thread, release_memory
from .session import StreamSession
from .settings import LIVE_OOM_MIN_SIDE, LIVE_OOM_SHRINK, TemporalSettings

T = TypeVar("T")


class FrameLost(StreamdreamError):
    """The frame a caller waits for was given up (the machine ran out of memory); the session goes on."""


class FairLock:
    """A non-reentrant lock granted first come, first served (a ticket lock)."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._next = 0  # next ticket handed out
        self._serving = 0  # ticket that holds (or may take) the lock
        self._abandoned: set[int] = set()  # tickets whose waiter gave up (interrupted)

    def acquire(self) -> None:
        with self._turn:
            ticket = self._next
            self._next += 1
            try:
                self._turn.wait_for(lambda: self._serving == ticket)
            except BaseException:
                if self._serving == ticket:
                    self._advance()
                else:
                    self._abandoned.add(ticket)
                raise

    def release(self) -> None:
        with self._turn:
            self._advance()

    def _advance(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.remove(self._serving)
            self._serving += 1
        self._turn.notify_all()

    @property
    def waiting(self) -> int:
        """How many threads wait for the lock."""
        with self._turn:
            return self._next - self._serving - len(self._abandoned) - 1 if self._next > self._serving else 0

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True)
class LiveResult:
    image: np.ndarray
    latency_ms: float  # from `submit` of its input frame to the result being ready
    index: int  # position among the session's results
    frame: int = 0  # the submission number of its input frame (what `LiveSession.submit` returned)


@dataclass(frozen=True)
class _Job:
    """One gathered frame of one session, with the changes to apply before it."""

    session: LiveSession
    image: np.ndarray
    frame: int
    submitted: float
    changes: dict[str, Any]


def _pending_change(name: str, same: Callable[[Any, Any], bool]) -> property:
    """A `LiveSession` attribute of its stream (`settings`, `mode`) whose new value waits for the engine's thread.

    Reading gives the value the next frame will use; setting a different one queues it.
    """

    def get(self: LiveSession) -> Any:
        with self._cond:
            return self._changes.get(name, getattr(self.stream, name))

    def put(self: LiveSession, value: Any) -> None:
        with self._cond:
            if not same(value, get(self)):
                self._changes[name] = value

    return property(get, put)


class LiveSession:
    """One live stream served by a `LiveEngine`: made by `LiveEngine.open`.

    `submit` never blocks; `wait` blocks until a frame's result (or a newer one) is ready; results
    also go to `on_result` (on the engine's thread) and to `latest`. Setting `mode` or `settings`, or
    calling `reset`, takes effect from the next frame the engine takes. After `close`, or after a
    frame failed (the error is kept in `error` and raised by `wait` and `submit`), no frame of the
    session is processed any more.

    Running out of memory is not such a failure while the frames can still shrink: the frame is
    lost (`lost`; `wait` raises `FrameLost` for it), the session works at a smaller `working_side`
    from the next frame on (results still come at the submitted size) and `notice` says so.
    """

    def __init__(self, engine: LiveEngine, stream: StreamSession, on_result: Callable[[LiveResult], None] | None) -> None:
        self.engine = engine
        self.stream = stream
        self.on_result = on_result
        self.latest: LiveResult | None = None
        self.submitted = 0
        self.processed = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self.closed = False
        self.lost = 0  # frames given up because the machine ran out of memory
        self.working_side: int | None = None  # longest side the engine works at (None: as submitted)
        self.notice: str | None = None  # what the owner should show: why the picture got softer
        self._lost_frame = 0  # number of the newest lost frame
        self._pending: tuple[np.ndarray, int, float] | None = None  # image, frame number, submit time
        self._changes: dict[str, Any] = {}  # "mode", "settings", "reset": applied on the engine's thread
        self._busy = False  # the engine is processing one of its frames
        self._effect: tuple[FrameMode, Future] | None = None  # its mode's still effect, being measured beside the rounds
        self._stamps: deque[float] = deque(maxlen=10)  # when its last results were ready

    @property
    def _cond(self) -> threading.Condition:
        return self.engine._cond

    def submit(self, image: np.ndarray) -> int:
        """Hand in the newest frame (H x W x 3 uint8); returns its number, for `wait`."""
        with self._cond:
            self._check()
            if self._pending is not None:
                self.dropped += 1
            self.submitted += 1
            self._pending = (image, self.submitted, time.perf_counter())
            self._cond.notify_all()
            return self.submitted

    def wait(self, frame: int | None = None, timeout: float | None = None) -> LiveResult:
        """The result of frame number `frame` (default: the last submitted) or of a newer frame."""
        with self._cond:
            frame = self.submitted if frame is None else frame
            done = lambda: self.latest is not None and self.latest.frame >= frame  # noqa: E731
            # the newest frame was lost: no result for `frame` or a newer one will come unless another is sent
            lost = lambda: self._lost_frame >= frame and self._lost_frame == self.submitted  # noqa: E731
            self._cond.wait_for(lambda: done() or lost() or self.error is not None or self.closed, timeout)
            if done():
                return self.latest
            self._check()
            if lost():
                raise FrameLost(self.notice or f"frame {frame} was lost")
            raise TimeoutError(f"no result for frame {frame} within {timeout} s")

    settings = _pending_change("settings", operator.eq)
    mode = _pending_change("mode", operator.is_)

    def reset(self) -> None:
        """The next frame starts afresh (a new objective or painting: the old result does not carry over)."""
        with self._cond:
            self._changes["reset"] = True

    def fps(self) -> float:
        """Results per second over the last few results."""
        with self._cond:
            stamps = list(self._stamps)
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return 0.0
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def close(self, *, drain: bool = False) -> None:
        """Stop serving the session: a frame still pending is dropped, or with `drain` processed first.

        A frame the engine is working on when `close` is called still finishes (`drain` waits for it).
        """
        with self._cond:
            if drain and threading.current_thread() is not self.engine._thread:
                self._cond.wait_for(lambda: (self._pending is None and not self._busy) or self.error is not None or self.closed)
            self.engine._forget(self)
            idle = not self._busy
        if idle:  # else the engine releases it when the frame it works on is done (`LiveEngine._idle`)
            self._release()

    def _release(self) -> None:
        """Drop the closed session's warm state, which its owner may keep a while (the web app's
        `gr.State`), and hand the memory back (`runtime.release_memory`): without it, a churn of 100
        web visitors of random sizes left the process 11.7% larger with nothing open, with it 2.2%
        (`benchmarks/soak.py`, 2-core Xeon)."""
        self.stream.reset()
        release_memory()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise StreamdreamError("the live session is closed")

    def _ready(self) -> bool:  # under the engine's condition
        """Whether its stream does not wait for a still effect being measured (`LiveEngine._measure_effect`)."""
        return self._effect is None or self._effect[1].done()

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LiveEngine:
    """Serves live sessions on one worker thread; owns the compute lock. One per process (`shared_engine`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # guards the sessions and everything they hand to the worker
        self._sessions: list[LiveSession] = []  # in serving order: the next tick starts with the first
        self._lock = FairLock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.steps = 0  # optimizer calls run for live frames (a batch is one)
        self.batched = 0  # frames those calls served

    # ---- live sessions

    def open(self, mode: FrameMode, settings: TemporalSettings | None = None, *, seed: int | None = 0,
             on_result: Callable[[LiveResult], None] | None = None) -> LiveSession:
        """A new live stream through `mode`, with its own warm state (`session.stream`)."""
        with self._cond:
            if self._stopping:
                raise StreamdreamError("the live engine is closed")
            session = LiveSession(self, StreamSession(mode, settings, seed=seed), on_result)
            self._sessions.append(session)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="streamdream-live", daemon=True)
                self._thread.start()
            return session

    @property
    def sessions(self) -> tuple[LiveSession, ...]:
        with self._cond:
            return tuple(self._sessions)

    def close(self) -> None:
        """Close every session and stop the worker."""
        with self._cond:
            self._stopping = True
            for session in list(self._sessions):
                self._forget(session)
            self._cond.notify_all()  # the worker may be waiting with no session left to forget
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> LiveEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- other model work, under the same lock

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Run the model work inside the block with nothing else on the model (waits its turn)."""
        with self._lock:
            yield

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` under the compute lock, on a thread of its own (`runtime.on_own_thread`).

        The caller is typically a web request's pooled thread, which would keep the OpenMP team of its
        model work for good, beside the worker's: from then on every live frame ran at half speed (a
        still dreamed on the main thread took a live painting at 320x240 on the 2-core Xeon from
        25.5-29.6 to 13.6-14.0 fps).

        Then the memory the work freed goes back to the system (`runtime.release_memory`): on a CPU
        the process keeps what its steps free (`runtime.keep_freed_memory`), and one large still
        would otherwise leave it as large as that still needed.
        """
        with self._lock:
            try:
                return on_own_thread(functools.partial(fn, *args, **kwargs))
            finally:
                release_memory()

    def serialized(self, mode: FrameMode) -> FrameMode:
        """`mode` with each frame's model work under the compute lock: a render takes turns with live frames."""
        return _Serialized(mode, self._lock)

    @property
    def waiting(self) -> int:
        """How many threads (the live worker, renders) wait for the compute lock."""
        return self._lock.waiting

    # ---- the worker

    def _forget(self, session: LiveSession) -> None:  # under self._cond
        session.closed = True
        if session._pending is not None:
            session._pending = None
            session.dropped += 1
        if session in self._sessions:
            self._sessions.remove(session)
        self._cond.notify_all()

    @property
    def mean_batch(self) -> float:
        """Live frames per optimizer call so far (1: nothing was batched)."""
        with self._cond:
            return self.batched / self.steps if self.steps else 0.0

    def _gather(self) -> list[_Job]:
        """Wait for frames; take the pending frame of every open session (empty: the engine stops).

        The served sessions move to the back of the serving order, so each tick starts with the ones
        served longest ago.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or any(s._pending is not None and s._ready() for s in self._sessions))
            if self._stopping:
                return []
            jobs = []
            for session in self._sessions:
                if session._pending is not None and session._ready():
                    image, frame, submitted = session._pending
                    jobs.append(_Job(session, image, frame, submitted, session._changes))
                    session._pending, session._changes, session._busy = None, {}, True
            served = [job.session for job in jobs]
            self._sessions = [s for s in self._sessions if s not in served] + served
            return jobs

    def _work(self) -> None:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="streamdream-flow") as pool:
            try:
                while jobs := self._gather():
                    self._serve(jobs, pool)
            finally:  # stopped (or, by a bug, crashed): nobody waits for a frame that will never come
                with self._cond:
                    self._stopping = True
                    for session in list(self._sessions):
                        self._forget(session)

    def _serve(self, jobs: list[_Job], pool: ThreadPoolExecutor) -> None:
        """One round: the jobs' queued changes applied, then one scheduler tick under the compute lock
        for those whose streams do not wait for a still effect (the others' frames wait for a later one)."""
        jobs = [job for job in jobs if self._apply(job) and not self._waits_for_effect(job)]
        if not jobs:
            return
        frames = [(job.session.stream, _fit(job.image, job.session.working_side)) for job in jobs]
        done = tick(frames, map_=pool.map, lock=self._lock)
        with self._cond:
            self.steps += done.batches
            self.batched += done.frames
        for job, result in zip(jobs, done.results):
            self._finish(job, result)
            if job.session.error is None and not job.session.closed:
                self._measure_effect(job.session, job.image)  # ahead of its next frame, which will ask

    def _measure_effect(self, session: LiveSession, image: np.ndarray) -> Future | None:
        """The measurement of the still effect the session's next carried frame asks its mode for,
        started if need be (None: there is nothing to wait for), on `image` as a round sees it (fitted,
        padded to its bucket), so a `Dreamer` keeps it for that size and the round finds it. It runs on
        a thread of its own; on a CUDA device under the compute lock, since eager work beside a round
        that captures a CUDA graph would break the capture. A mode that knows the answer already is
        left to the round: a thread just started to look it up could make the stream sit a round out."""
        stream = session.stream
        if not stream.asks_still_effect():
            return None
        mode = stream.mode
        if session._effect is None or session._effect[0] is not mode:
            tensor = to_tensor(to_bucket(_fit(image, session.working_side)), mode.device)
            if mode.knows_still_effect(tensor):
                return None
            lock = self._lock if torch.device(mode.device).type == "cuda" else contextlib.nullcontext()
            session._effect = (mode, _measured(mode, tensor, lock, self._wake))
        return session._effect[1]

    def _waits_for_effect(self, job: _Job) -> bool:
        """Whether the job's stream waits for its mode's still effect (`_measure_effect`): then its frame
        goes back to wait for a round after the measurement is done (or has failed: the round then asks
        again, and the session fails with the error)."""
        session = job.session
        effect = self._measure_effect(session, job.image)
        if effect is None or effect.done():
            session._effect = None
            return False
        with self._cond:
            if session._pending is None:
                session._pending = (job.image, job.frame, job.submitted)
            else:  # a newer frame came meanwhile: this one is stale
                session.dropped += 1
            session._busy = False
            self._cond.notify_all()
        return True

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _apply(self, job: _Job) -> bool:
        """Apply the session's queued changes to its stream; False when the job is not to run (closed, failed)."""
        session, stream = job.session, job.session.stream
        try:
            if session.closed:  # closed after its frame was gathered
                self._idle(session)
                return False
            if "mode" in job.changes:
                stream.mode = job.changes["mode"]
            if "settings" in job.changes:
                stream.settings = job.changes["settings"]
            if job.changes.get("reset"):
                stream.reset()
            return True
        except Exception as error:  # noqa: BLE001 - kept for the session's owner; the engine serves the others
            self._fail(session, error)
            return False

    def _finish(self, job: _Job, image: np.ndarray | BaseException) -> None:
        session = job.session
        try:
            if isinstance(image, BaseException):
                raise image
            if image.shape != job.image.shape:  # worked smaller: shown at the size the owner sent
                image = cv2.resize(image, job.image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            with self._cond:
                result = LiveResult(image, 1000 * (time.perf_counter() - job.submitted), session.processed, job.frame)
                session.latest = result
                session.processed += 1
                session._stamps.append(time.perf_counter())
                self._cond.notify_all()
            if session.on_result is not None:
                session.on_result(result)
        except BaseException as error:  # noqa: BLE001 - kept for the session's owner
            if not (is_out_of_memory(error) and self._shrink(job)):
                self._fail(session, error)
        finally:
            self._idle(session)

    def _shrink(self, job: _Job) -> bool:
        """After the machine ran out of memory on `job`: lose its frame and work smaller from now on.

        Only the streams of the batch that ran out lose a frame; the others' results were made.
        False when the frames cannot shrink any more (the session then fails with the error).
        """
        session = job.session
        side = session.working_side or max(job.image.shape[:2])
        smaller = int(side * LIVE_OOM_SHRINK)
        if smaller < LIVE_OOM_MIN_SIDE:
            return False
        if torch.device(session.stream.mode.device).type == "cuda":
            torch.cuda.empty_cache()  # the failed batch's blocks go back to the device for everyone
        with self._cond:
            session.working_side = smaller
            session.lost += 1
            session._lost_frame = max(session._lost_frame, job.frame)
            session.notice = f"out of memory at {side} px: working at {smaller} px from now on"
            self._cond.notify_all()
        return True

    def _fail(self, session: LiveSession, error: BaseException) -> None:
        with self._cond:
            session.error = error
            self._forget(session)
            session._busy = False
            self._cond.notify_all()

    def _idle(self, session: LiveSession) -> None:
        with self._cond:
            session._busy = False
            self._cond.notify_all()
        if session.closed:
            session._release()


class _Serialized(FrameMode):
    """A frame mode whose frames' model work runs under a compute lock, alone (never batched)."""

    def __init__(self, mode: FrameMode, lock: FairLock) -> None:
        self.mode = mode
        self.device = mode.device
        self._lock = lock

    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._locked(self.mode.plan_first_frame(image, generator))

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):  # typed in FrameMode
        return self._locked(self.mode.plan_next_frame(image, previous_input, previous_output, motion, settings, generator))

    def still_effect(self, image: torch.Tensor) -> float | None:
        with self._lock:
            return self.mode.still_effect(image)

    def knows_still_effect(self, image: torch.Tensor) -> bool:
        return self.mode.knows_still_effect(image)

    def _locked(self, work: Work) -> torch.Tensor:
        with self._lock:
            return work.run()


def _measured(mode: FrameMode, image: torch.Tensor, lock: contextlib.AbstractContextManager, done: Callable[[], None]) -> Future:
    """`mode.still_effect(image)` under `lock`, on a thread of its own that ends with it (the OpenMP
    team it starts ends too: `runtime.on_own_thread`); `done` is called when it is. A failure is kept
    in the Future: the round asks again and fails the session."""

    def measure() -> float:
        with lock:
            return mode.still_effect(image)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamdream-effect")
    future = pool.submit(measure)
    pool.shutdown(wait=False)  # the thread ends once the effect is measured
    future.add_done_callback(lambda _: done())
    return future


def _fit(rgb: np.ndarray, side: int | None) -> np.ndarray:
    """`rgb` shrunk so its longer side is at most `side` (None: as it is)."""
    return rgb if side is None or max(rgb.shape[:2]) <= side else resize_max_side(rgb, side)


_SHARED: LiveEngine | None = None
_SHARED_LOCK = threading.Lock()  # guards creating the shared engine


def shared_engine() -> LiveEngine:
    """The process's live engine (made on first use): front ends that share a model share this."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = LiveEngine()
        return _SHARED
